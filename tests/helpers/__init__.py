"""What the tests share, in one place (no test module imports another):

- nettest: namespaces, processes run inside them, bounded traffic, polling.
- world:   the World of the pump tests (two namespaces, a veth underlay, a
           device in each) and the checks run against it.
- fakedev: FakeDevice, a socketpair standing in for a TUN/TAP queue, so pump
           tests run without root; Rig runs one test body on fake or real devices.
- framing: simpletun's framing ([2-byte length][packet]) for TCP tests.
- simpletun: a reference simpletun, run as a script inside a namespace.
- sanitizer: the ASan + UBSan copy of the tree and the child pytest of the
           C-level tests (C_LEVEL_TESTS) run in the background of the session.

Packet builders live in tests/packets.py (import it as `packets`)."""
