"""Token buffers: token-major int8 activations in BRAM (``lib.memory.Memory``).

A buffer of ``rows`` tokens x ``cols`` int8 channels is stored as words of ``lanes`` int8 (lane
0 = the lowest column); token ``r``'s channels ``[w * lanes, (w + 1) * lanes)`` are word
``r * words_per_row + w``, ``words_per_row = ceil(cols / lanes)``.  A word is one engine
activation word when ``lanes = rows`` of the array, so a K tile of one token is one read.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.validate import check_int

ROW_BITS = 16
"""Row and word fields of every token-buffer port are ``ROW_BITS + 1`` / ``WORD_BITS + 1`` wide
(descriptor fields are 16 bits; one more so a row or word just past the end never wraps), so
any unit's address stream connects to any buffer."""
WORD_BITS = 16


class TokenBuffer(wiring.Component):
    """One token buffer of ``rows`` x ``cols`` int8.

    * ``wr`` (in, always ready): ``row``, ``word`` (word index in the row), ``data`` (``lanes``
      x int8), ``mask`` (one bit per lane: write it).  A write to ``row >= rows`` or
      ``word >= words_per_row`` is dropped (never wraps onto another token).
    * ``rd_cmd`` (in) / ``rd`` (out): one ``rd`` word (``lanes`` x int8) per ``rd_cmd``
      (``row``, ``word``), in order, one per cycle at full rate; backpressure on ``rd`` stalls
      ``rd_cmd``.  An out-of-range read returns an unspecified word.
    A write and a read of the same word in one cycle: the read returns the old word.
    """

    def __init__(self, rows: int, cols: int, lanes: int):
        check_int("TokenBuffer", "rows", rows, 1, 1 << 16)
        check_int("TokenBuffer", "cols", cols, 1, 1 << 16)
        check_int("TokenBuffer", "lanes", lanes, 1, 256)
        self.rows, self.cols, self.lanes = rows, cols, lanes
        self.words_per_row = -(-cols // lanes)
        self.depth = rows * self.words_per_row
        addr = {"row": ROW_BITS + 1, "word": WORD_BITS + 1}
        super().__init__({
            "wr": In(stream.Signature(data.StructLayout({**addr, "data": 8 * lanes, "mask": lanes}))),
            "rd_cmd": In(stream.Signature(data.StructLayout(addr))),
            "rd": Out(stream.Signature(8 * lanes)),
        })

    def _addr(self, m: Module, p, name: str) -> tuple[Signal, Signal]:
        addr = Signal(range(self.depth + 1), name=f"{name}_addr")
        ok = Signal(name=f"{name}_ok")
        m.d.comb += [addr.eq(p.row * self.words_per_row + p.word),
                     ok.eq((p.row < self.rows) & (p.word < self.words_per_row))]
        return addr, ok

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8 * self.lanes, depth=self.depth, init=[])
        wp = mem.write_port(granularity=8)
        rp = mem.read_port(transparent_for=())
        waddr, wok = self._addr(m, self.wr.payload, "wr")
        raddr, _ = self._addr(m, self.rd_cmd.payload, "rd")
        m.d.comb += [
            self.wr.ready.eq(1),
            wp.addr.eq(waddr), wp.data.eq(self.wr.payload.data),
            wp.en.eq(Mux(self.wr.valid & wok, self.wr.payload.mask, 0)),
        ]
        # One-deep read pipeline: the port's output register holds the word until it is taken.
        full = Signal()
        m.d.comb += [
            rp.en.eq(~full | self.rd.ready),
            rp.addr.eq(raddr),
            self.rd_cmd.ready.eq(rp.en),
            self.rd.valid.eq(full),
            self.rd.payload.eq(rp.data),
        ]
        with m.If(rp.en):
            m.d.sync += full.eq(self.rd_cmd.valid)
        return m


class TokenBuffers(wiring.Component):
    """The set of token buffers, one :class:`TokenBuffer` per entry of ``specs``
    (name -> ``(rows, cols)``), all with ``lanes`` int8 per word.  Each buffer keeps its own
    ports (``wr_<name>``, ``rd_cmd_<name>``, ``rd_<name>``); the layer controller routes them."""

    def __init__(self, specs: dict[str, tuple[int, int]], lanes: int):
        if not specs:
            raise ValueError("TokenBuffers: specs must name at least one buffer, not {}")
        self.buffers = {name: TokenBuffer(r, c, lanes) for name, (r, c) in specs.items()}
        members = {}
        for name, buf in self.buffers.items():
            for port, member in buf.signature.members.items():
                members[f"{port}_{name}"] = member
        super().__init__(members)

    @classmethod
    def from_config(cls, acc) -> "TokenBuffers":
        """Every buffer of :func:`heatvit.isa.token_buffers` for an ``AcceleratorConfig``, with
        words of :func:`heatvit.isa.column_align` int8 (one engine word)."""
        from heatvit import isa
        specs = {b.name.lower(): (s.rows, s.cols) for b, s in isa.token_buffers(acc).items()}
        return cls(specs, isa.column_align(acc))

    def elaborate(self, platform):
        m = Module()
        for name, buf in self.buffers.items():
            m.submodules[name] = buf
            wiring.connect(m, wiring.flipped(getattr(self, f"wr_{name}")), buf.wr)
            wiring.connect(m, wiring.flipped(getattr(self, f"rd_cmd_{name}")), buf.rd_cmd)
            wiring.connect(m, buf.rd, wiring.flipped(getattr(self, f"rd_{name}")))
        return m
