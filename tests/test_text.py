from wai.text import IncrementalDetokenizer


def test_multibyte_characters_split_across_tokens_are_held_back() -> None:
    d = IncrementalDetokenizer()
    pieces = [d.push(bytes([b])) for b in "a😀é".encode()]
    assert pieces == ["a", "", "", "", "😀", "", "é"]
    assert d.flush() == ""


def test_an_unfinished_character_at_the_end_is_dropped_not_replaced() -> None:
    d = IncrementalDetokenizer()
    assert d.push(b"ok" + "😀".encode()[:2]) == "ok"
    assert d.flush() == ""


def test_invalid_bytes_mid_stream_are_still_replaced() -> None:
    d = IncrementalDetokenizer()
    assert d.push(b"a\xffb") == "a\ufffdb"


def test_stop_strings_are_cut_even_across_deltas() -> None:
    from wai.text import StopMatcher

    m = StopMatcher(["END", "\n\n"])
    out = [m.push(t) for t in ["Hello E", "N", "D world"]]
    assert out == ["Hello ", "", ""]
    assert m.stopped and m.flush() == ""


def test_held_text_is_released_when_it_is_not_a_stop() -> None:
    from wai.text import StopMatcher

    m = StopMatcher(["END"])
    assert m.push("the E") == "the "
    assert m.push("nd") == "End"
    assert m.push("ing E") == "ing "
    assert m.flush() == "E"
    assert not m.stopped
