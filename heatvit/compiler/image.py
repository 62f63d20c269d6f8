"""The DDR model image: header, program, parameter blocks, memory map; writer and validating reader.

Layout (all little-endian; every section starts at a multiple of :data:`heatvit.isa.DDR_ALIGN`)::

    0   header (HEADER_BYTES): see HEADER_FIELDS
    64  program: count descriptors of isa.DESC_BYTES
    ..  data: parameter blocks and constant tensors (descriptor addresses are offsets from byte 0
        of the image, the MODEL region's base)
    ..  memory map: UTF-8 JSON (sorted keys): config, model shapes, input/output formats, data
        blocks, one entry per descriptor, golden stage -> descriptors

The header's ``crc32`` covers every byte after the header, so a damaged image is refused on the
host before it reaches the board.  No Amaranth or golden imports (the board driver reads images).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from .. import isa

MAGIC = b"HVIM"
FORMAT_VERSION = 1
HEADER_BYTES = 64
HEADER_FIELDS = (
    ("magic", "4s", "b'HVIM'"),
    ("format", "I", "image format version (FORMAT_VERSION)"),
    ("isa_version", "I", "ISA version word of the program (major << 16 | minor)"),
    ("digest", "12s", "AcceleratorConfig.digest() the image was compiled for (ASCII hex)"),
    ("total_bytes", "I", "bytes of the whole image"),
    ("program_offset", "I", "byte offset of the first descriptor"),
    ("program_count", "I", "descriptors in the program"),
    ("map_offset", "I", "byte offset of the JSON memory map"),
    ("map_bytes", "I", "bytes of the JSON memory map"),
    ("input_bytes", "I", "bytes of the INPUT region the program reads (int8 patches)"),
    ("output_bytes", "I", "bytes of the OUTPUT region the program writes (logits)"),
    ("crc32", "I", "zlib.crc32 of bytes [HEADER_BYTES, total_bytes)"),
)
_HEADER_FMT = "<" + "".join(f for _, f, _ in HEADER_FIELDS)
assert struct.calcsize(_HEADER_FMT) <= HEADER_BYTES


class ImageError(ValueError):
    """A malformed, damaged or mismatched model image."""


@dataclass(frozen=True)
class ModelImage:
    """A validated image: its header fields, program, memory map and bytes."""
    header: dict
    program: list
    memory_map: dict
    blob: bytes

    @property
    def digest(self) -> str:
        return self.header["digest"]

    @property
    def input(self) -> dict:
        return self.memory_map["io"]["input"]

    @property
    def output(self) -> dict:
        return self.memory_map["io"]["output"]


def _align(n: int) -> int:
    return -(-n // isa.DDR_ALIGN) * isa.DDR_ALIGN


def build(acc, descs: list, data: bytes, memory_map: dict) -> bytes:
    """Assemble an image.  ``descs``' MODEL-region addresses are relative to ``data``; they are
    rebased here to offsets from the image start."""
    prog_off = HEADER_BYTES
    data_off = _align(prog_off + len(descs) * isa.DESC_BYTES)
    rebased = []
    for d in descs:
        if d.opcode in (isa.Op.GEMM, isa.Op.LAYERNORM) or (d.opcode == isa.Op.LOAD and d.region == isa.Region.MODEL):
            d = d.with_(addr=d.addr + data_off)
        rebased.append(d)
    program = isa.pack_program(rebased)
    map_off = _align(data_off + len(data))
    memory_map = dict(memory_map)
    memory_map["descriptors"] = [{"index": i, "op": isa.Op(d.opcode).name, "name": d.name}
                                 for i, d in enumerate(descs)]
    memory_map["sections"] = {"header": [0, HEADER_BYTES], "program": [prog_off, len(program)],
                              "data": [data_off, len(data)]}
    memory_map["blocks"] = [{**b, "offset": b["offset"] + data_off} for b in memory_map.get("blocks", [])]
    text = json.dumps(memory_map, sort_keys=True, separators=(",", ":")).encode()
    total = map_off + len(text)
    body = bytearray(total)
    body[prog_off:prog_off + len(program)] = program
    body[data_off:data_off + len(data)] = data
    body[map_off:] = text
    io = memory_map["io"]
    hdr = {"magic": MAGIC, "format": FORMAT_VERSION, "isa_version": isa.isa_version_word(),
           "digest": acc.digest().encode(), "total_bytes": total, "program_offset": prog_off,
           "program_count": len(descs), "map_offset": map_off, "map_bytes": len(text),
           "input_bytes": io["input"]["bytes"], "output_bytes": io["output"]["bytes"],
           "crc32": zlib.crc32(bytes(body[HEADER_BYTES:]))}
    struct.pack_into(_HEADER_FMT, body, 0, *(hdr[n] for n, _, _ in HEADER_FIELDS))
    return bytes(body)


def read(blob: bytes, acc=None) -> ModelImage:
    """Validate and parse an image; ``acc``: also require it was compiled for this config.
    Every defect raises :class:`ImageError` saying what is wrong."""
    blob = bytes(blob)
    if len(blob) < HEADER_BYTES:
        raise ImageError(f"model image truncated: {len(blob)} bytes, shorter than the {HEADER_BYTES}-byte header")
    vals = struct.unpack_from(_HEADER_FMT, blob, 0)
    hdr = {n: v for (n, _, _), v in zip(HEADER_FIELDS, vals)}
    if hdr["magic"] != MAGIC:
        raise ImageError(f"not a heatvit model image: magic {hdr['magic']!r}, expected {MAGIC!r}")
    if hdr["format"] != FORMAT_VERSION:
        raise ImageError(f"model image format version {hdr['format']} is not supported; this reader "
                         f"reads version {FORMAT_VERSION} (recompile with `heatvit compile`)")
    major, minor = hdr["isa_version"] >> 16, hdr["isa_version"] & 0xFFFF
    if major != isa.ISA_VERSION[0] or minor > isa.ISA_VERSION[1]:
        raise ImageError(f"model image ISA version {major}.{minor} is not supported; allowed "
                         f"{isa.ISA_VERSION[0]}.0 .. {isa.ISA_VERSION[0]}.{isa.ISA_VERSION[1]}")
    if hdr["total_bytes"] != len(blob):
        what = "truncated" if len(blob) < hdr["total_bytes"] else "has trailing bytes"
        raise ImageError(f"model image {what}: the header says {hdr['total_bytes']} bytes, got {len(blob)}")
    crc = zlib.crc32(blob[HEADER_BYTES:])
    if crc != hdr["crc32"]:
        raise ImageError(f"model image damaged: crc32 {crc:#010x} != header {hdr['crc32']:#010x}")
    try:
        hdr["digest"] = hdr["digest"].decode("ascii")
    except UnicodeDecodeError:
        raise ImageError(f"model image header: config digest {hdr['digest']!r} is not ASCII") from None
    if acc is not None and hdr["digest"] != acc.digest():
        raise ImageError(f"model image was compiled for config {hdr['digest']}, not for this accelerator's "
                         f"{acc.digest()}: recompile with `heatvit compile --config ...`")
    po, pc = hdr["program_offset"], hdr["program_count"]
    if po < HEADER_BYTES or po + pc * isa.DESC_BYTES > len(blob):
        raise ImageError(f"model image header: program ({pc} descriptors at {po}) lies outside the image")
    mo, mb = hdr["map_offset"], hdr["map_bytes"]
    if mo < HEADER_BYTES or mo + mb > len(blob):
        raise ImageError(f"model image header: memory map ({mb} bytes at {mo}) lies outside the image")
    try:
        program = isa.unpack_program(blob[po:po + pc * isa.DESC_BYTES])
    except isa.DescriptorError as e:
        raise ImageError(f"model image program: {e}") from None
    try:
        memory_map = json.loads(blob[mo:mo + mb].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImageError(f"model image memory map is not valid JSON: {e}") from None
    for i, entry in enumerate(memory_map.get("descriptors", [])):
        if i < len(program):
            program[i] = program[i].with_(name=entry["name"])
    if acc is not None:
        try:
            isa.check_program(program, acc)
        except isa.DescriptorError as e:
            raise ImageError(f"model image program: {e}") from None
    return ModelImage(hdr, program, memory_map, blob)
