"""Hardware error codes, shared by the RTL, the golden model of the controller and the driver.

Codes 1-15 are raised by the GEMM engine when it rejects a command; the accelerator shell uses
16-23, the token-selector unit 24-31 and the layer controller 32-39 (checks in
:func:`heatvit.isa.check`).  0 means no error.
"""

from enum import IntEnum


class ErrorCode(IntEnum):
    OK = 0
    ZERO_DIMENSION = 1       # M, K or N is 0
    M_TOO_LARGE = 2          # M > GemmConfig.max_m (accumulator depth)
    K_TOO_LARGE = 3          # K > GemmConfig.max_k
    N_TOO_LARGE = 4          # N > GemmConfig.max_n (parameter buffer depth)
    ACT_BUFFER_OVERFLOW = 5  # ceil(K/R) * M > GemmConfig.act_buffer_words
    TILE_COUNT_TOO_LARGE = 6  # sparse GEMM: tiles > ceil(K/R) * ceil(N/C)
    TILE_BITMAP_MISMATCH = 7  # sparse GEMM: the bitmap's set bits differ from the descriptor's tiles
    # -- accelerator shell (rtl/shell, docs/shell.md) --
    START_WHILE_BUSY = 16    # CTRL.start written while a job runs (the job goes on)
    ADDRESS_OUT_OF_WINDOW = 17  # a buffer is not inside ShellConfig's DMA window
    UNALIGNED_ADDRESS = 18   # a buffer address is not a multiple of the AXI beat size
    TIMEOUT = 19             # watchdog: no DMA or engine progress for watchdog_cycles
    AXI_READ_ERROR = 20      # RRESP was SLVERR or DECERR
    AXI_WRITE_ERROR = 21     # BRESP was SLVERR or DECERR
    # -- token-selector control unit (rtl/toksel, docs/token_selector.md) --
    TOKSEL_BAD_TOKENS = 24   # selector command: token count 0 or > TokSelConfig.max_tokens
    TOKSEL_BAD_TAIL = 25     # selector command: earlier package tokens >= token count
    # -- layer controller (docs/isa.md) --
    CTRL_BAD_OPCODE = 32     # a descriptor's opcode is not an isa.Op
    CTRL_BAD_FIELD = 33      # bits set outside the opcode's fields, or an invalid enum value
    CTRL_BAD_BUFFER = 34     # a buffer id is not a token buffer (or cannot feed the weight port)
    CTRL_BAD_SHAPE = 35      # a window passes its buffer's rows/columns, or a zero/oversized dimension
    CTRL_BAD_ADDRESS = 36    # misaligned DDR address, stride or buffer column
    CTRL_BAD_PROGRAM = 37    # no BEGIN first, ISA version or config ID mismatch, no END within count
    CTRL_BAD_PARAMS = 38     # a parameter record outside its format (heatvit.isa.record_limits)
    CTRL_UNSUPPORTED_OP = 39  # a valid opcode whose executor this accelerator build does not have


class HardwareError(RuntimeError):
    """Raised by drivers when the hardware reports a non-zero error code."""

    def __init__(self, code: int, context: str = ""):
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"UNKNOWN_{code}"
        self.code = int(code)
        self.name = name
        super().__init__(f"hardware error {code} ({name}){': ' + context if context else ''}")
