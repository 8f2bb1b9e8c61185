from wai.text import IncrementalDetokenizer


def test_multibyte_characters_split_across_tokens_are_held_back() -> None:
    d = IncrementalDetokenizer()
    pieces = [d.push(bytes([b])) for b in "a😀é".encode()]
    assert pieces == ["a", "", "", "", "😀", "", "é"]
    assert d.flush() == ""


def test_a_broken_tail_is_flushed_as_replacement() -> None:
    d = IncrementalDetokenizer()
    assert d.push(b"ok" + "😀".encode()[:2]) == "ok"
    assert d.flush() == "\ufffd"
