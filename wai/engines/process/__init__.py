"""The machinery every engine family shares: a model's engine in a child process of its own,
started, fed and supervised by the server.

- `child`: the child's command line and environment, and how to read its exit;
- `frames`: the channel (length-prefixed msgpack frames over two pipes), the messages every
  engine understands (`Stop`, `Fatal`), and the child's side of it (`Sender`, `serve_inbox`);
- `supervisor`: the server's side: start, the backlog while (re)starting, restart with backoff
  after a crash, give up after too many, stop.

An engine family (llamacpp/, speech/, …) brings its own messages and its own step loop; it never
re-implements any of this.
"""
