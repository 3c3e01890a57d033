"""Linear layers that multiply by a prepacked weight on a CPU: ``prepack(model)``.

A CPU ``nn.Linear`` hands its weight, stored ``[out, in]`` row by row, to the matrix library on
every call, and the library lays it out anew in the blocks its kernel reads. A decoding step
multiplies each weight by a handful of rows, so that relayout costs as much as the product:
SmolLM2-135M's 30 layers at 16 rows took 32 ms in bf16 and 80 ms in fp32 as ``F.linear``, 22
and 36 ms with the weights laid out once by oneDNN (``torch.ops.mkldnn._reorder_linear_weight``)
and multiplied by ``torch.ops.mkldnn._linear_pointwise``; a 4,096-token prefill 1.4x and 1.8x
faster (2 AMD EPYC cores, benchmarks/bench_decode_attention.py). In bf16 both calls run the
same oneDNN kernel and give identical results; in fp32 ``F.linear`` is MKL's and the two sum in
different orders (outputs differ by ~1e-4 of magnitudes ~10).

    prepack(model)    # on a CPU: every nn.Linear multiplies by a packed copy; None, or why not

The packed copy costs the linear weights' memory once more, so ``prepack`` declines (and says
why) when that would take more than a quarter of the memory available.

On a CPU with AVX-512 BF16, bf16 layers can also carry a second copy laid out for the kit's own
few-row product (``use_rows_kernel(model, kernel)``, the kernel from ``lw.llm.cpu_kernel``):
inputs of at most ``FEW_ROWS`` rows (a decoding step's batch) go there instead of oneDNN, whose
bf16 product for 1-16 rows read the weights at ~9-11 GB/s where these cores read memory at ~39;
SmolLM2-135M's 211 products at 16 rows took ~17 ms instead of ~28, at 8 rows ~13 instead of
~24 (2 AMD EPYC cores, benchmarks/bench_decode_attention.py). Longer inputs (prefill) keep
oneDNN's copy. Both sum bf16 products in fp32 and round once; only the order of the sums
differs. A packed layer computes
as ``nn.Linear`` where the packed copy cannot serve: gradients wanted (training), autocast,
another device or dtype, an empty input. Packed copies live beside the model, not in it (``_PACKED``): a
deepcopy or a saved model carries none, and a layer packs again the first time it runs after
its weight changed in place (its version counter) or was replaced, so it never multiplies by a
stale copy.
"""

import weakref

NAME = "oneDNN prepacked linear"
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # layer -> (key, packed)
_ROWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # layer -> [kernel, key, packed]
SHARE_OF_AVAILABLE = 0.25  # the most of the available memory the packed copies may take
# Rows up to which a bf16 input goes to the kit's kernel: at 32 rows it still took ~0.75x
# oneDNN's time (SmolLM2-135M's layers, bench_decode_attention.py); prefill is far longer.
FEW_ROWS = 32


def _linear_class():
    import torch

    global _EMPTY
    _EMPTY = torch.empty(0, dtype=torch.bfloat16)

    class PackedLinear(torch.nn.Linear):
        """``nn.Linear`` multiplying by a prepacked copy of its weight where it can (module
        docstring); the class ``prepack`` gives a model's linear layers."""

        def forward(self, x):
            w = self.weight
            if (x.device.type != "cpu" or x.dtype != w.dtype or x.numel() == 0
                    or torch.is_autocast_enabled("cpu")  # autocast casts inside F.linear
                    or (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))):
                return torch.nn.functional.linear(x, w, self.bias)
            key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
            rows = _ROWS.get(self)
            if rows is not None and x.numel() <= FEW_ROWS * x.shape[-1]:
                kernel = rows[0]
                if rows[1] != key:  # the weight changed: lay it out again
                    rows[1:] = [key, _pack_rows(kernel, w)]
                bias = self.bias if self.bias is not None else _EMPTY
                out = kernel.rows_linear(x.reshape(-1, x.shape[-1]), rows[2], bias)
                return out.reshape(*x.shape[:-1], out.shape[-1])
            entry = _PACKED.get(self)
            if entry is None or entry[0] != key:
                entry = (key, _pack(w))
                _PACKED[self] = entry
            out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), entry[1],
                                                     self.bias, "none", [], "")
            return out.reshape(*x.shape[:-1], out.shape[-1])

    return PackedLinear


_CLASS = None


def packed_class():
    """The ``PackedLinear`` class (built on first use: this module imports torch lazily)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _linear_class()
    return _CLASS


def _pack(weight):
    import torch

    with torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 16)


def _pack_rows(kernel, weight):
    import torch

    with torch.no_grad():
        return kernel.pack_rows(weight.detach())


_EMPTY = None  # an empty tensor: the kernel's "no bias" (made by _linear_class)


def unavailable(model) -> str | None:
    """Why ``model``'s linear layers cannot be packed here, or None."""
    import torch

    layers = _plain_linears(model)
    if not layers:
        return "no nn.Linear layer with fp32 or bf16 weights"
    devices = sorted({m.weight.device.type for m in layers})
    if devices != ["cpu"]:  # a GPU, or layers spread over devices (device_map="auto")
        return f"the model is on {' and '.join(devices)}: packing is for CPUs"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (torch.backends.mkldnn)"
    if (any(m.weight.dtype == torch.bfloat16 for m in layers)
            and not torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return "oneDNN has no bf16 kernels on this CPU"
    need = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    available = _available_bytes()
    if available is not None and need > SHARE_OF_AVAILABLE * available:
        return (f"the packed copies would take {need / 2**30:.1f} GiB, more than a quarter of "
                f"the {available / 2**30:.1f} GiB available")
    return None


def prepack(model) -> str | None:
    """Give every ``nn.Linear`` of ``model`` (fp32 or bf16 weights, on a CPU) a packed copy of
    its weight; None when done, else why not (and nothing changed)."""
    if packed_layers(model) and not _plain_linears(model):
        return None  # packed already (a second chat model around the same weights)
    why = unavailable(model)
    if why:
        return why
    cls = packed_class()
    for layer in _plain_linears(model):
        layer.__class__ = cls
        _PACKED[layer] = ((layer.weight.data_ptr(), layer.weight._version, layer.weight.dtype,
                           tuple(layer.weight.shape)), _pack(layer.weight))
    return None


def rows_unavailable(layer, kernel) -> str | None:
    """Why ``layer`` cannot use the kit's few-row kernel, or None."""
    import torch

    w = layer.weight
    if w.dtype != torch.bfloat16:
        return f"its weights are {str(w.dtype).removeprefix('torch.')}, the kernel is bf16"
    if w.shape[0] % 16 or w.shape[1] % 2:
        return f"its weight is {tuple(w.shape)}: outputs must be a multiple of 16, inputs even"
    if not kernel.bf16_dot():
        return "the CPU lacks AVX-512 BF16 (vdpbf16ps)"
    return None


def use_rows_kernel(model, kernel) -> str | None:
    """Give ``model``'s packed bf16 layers a copy laid out for ``kernel.rows_linear`` (the
    compiled module of ``lw.llm.cpu_kernel``), used for inputs of at most ``FEW_ROWS`` rows;
    None when at least one layer took it, else why none did (and nothing changed). Layers it
    cannot serve (a shape it does not take) keep oneDNN's product."""
    layers = [m for m in model.modules() if _CLASS is not None and type(m) is _CLASS]
    if not layers:
        return "the linear layers are not prepacked"
    whys = {m: rows_unavailable(m, kernel) for m in layers}
    able = [m for m, why in whys.items() if why is None]
    if not able:
        return next(iter(whys.values()))
    need = sum(m.weight.numel() * m.weight.element_size() for m in able)
    available = _available_bytes()
    if available is not None and need > SHARE_OF_AVAILABLE * available:
        return (f"the copies would take {need / 2**30:.1f} GiB, more than a quarter of the "
                f"{available / 2**30:.1f} GiB available")
    for m in able:
        w = m.weight
        _ROWS[m] = [kernel, (w.data_ptr(), w._version, w.dtype, tuple(w.shape)),
                    _pack_rows(kernel, w)]
    return None


def drop_rows_kernel(model) -> int:
    """Stop ``model``'s layers using the few-row kernel (oneDNN's product again); how many did."""
    n = 0
    for m in model.modules():
        if _ROWS.pop(m, None) is not None:
            n += 1
    return n


def rows_kernel_layers(model) -> int:
    """How many of ``model``'s layers use the few-row kernel."""
    return sum(m in _ROWS for m in model.modules())


def unpack(model) -> int:
    """Turn ``model``'s packed layers back into plain ``nn.Linear``; how many there were."""
    import torch

    n = 0
    for module in model.modules():
        if type(module) is _CLASS:
            module.__class__ = torch.nn.Linear
            _PACKED.pop(module, None)
            _ROWS.pop(module, None)
            n += 1
    return n


def packed_layers(model) -> int:
    """How many of ``model``'s layers multiply by a packed copy."""
    return sum(type(m) is _CLASS for m in model.modules()) if _CLASS else 0


def _plain_linears(model) -> list:
    import torch

    return [m for m in model.modules() if type(m) is torch.nn.Linear
            and m.weight.dtype in (torch.float32, torch.bfloat16)]


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else psutil's, else None (not known)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().available
