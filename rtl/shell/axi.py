"""AXI4 and AXI4-Lite port signatures (master view; flip for a slave).

Member names are the AXI signal names without the interface prefix, so Amaranth flattens a
port ``m_axi`` to ``m_axi__awaddr``; :mod:`.wrapper` renames them to Vivado's ``m_axi_awaddr``.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.shell_config import REG_ADDR_BITS, ShellConfig

BURST_INCR = 0b01
CACHE_MODIFIABLE_BUFFERABLE = 0b0011   # normal non-cacheable bufferable (Xilinx HP default)
RESP_OKAY = 0b00


def axi_lite_signature(addr_bits: int = REG_ADDR_BITS, data_bits: int = 32) -> wiring.Signature:
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def _addr_channel(p: str, cfg: ShellConfig) -> dict:
    return {f"{p}id": Out(cfg.id_width), f"{p}addr": Out(cfg.addr_width), f"{p}len": Out(8),
            f"{p}size": Out(3), f"{p}burst": Out(2), f"{p}lock": Out(1), f"{p}cache": Out(4),
            f"{p}prot": Out(3), f"{p}qos": Out(4), f"{p}valid": Out(1), f"{p}ready": In(1)}


def axi4_signature(cfg: ShellConfig) -> wiring.Signature:
    d = cfg.data_width
    return wiring.Signature({
        **_addr_channel("aw", cfg),
        "wdata": Out(d), "wstrb": Out(d // 8), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bid": In(cfg.id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        **_addr_channel("ar", cfg),
        "rid": In(cfg.id_width), "rdata": In(d), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })
