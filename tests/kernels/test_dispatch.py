import pytest
import torch

from attnzoo.kernels import dispatch
from attnzoo.kernels.dispatch import kernel_backend, use_kernels, use_triton


def test_default_is_auto(monkeypatch):
    monkeypatch.delenv("ATTNZOO_KERNELS", raising=False)
    assert kernel_backend() == "auto"


def test_env_var_and_context_manager(monkeypatch):
    monkeypatch.setenv("ATTNZOO_KERNELS", "torch")
    assert kernel_backend() == "torch"
    with use_kernels("triton"):
        assert kernel_backend() == "triton"
        with use_kernels("auto"):
            assert kernel_backend() == "auto"
        assert kernel_backend() == "triton"
    assert kernel_backend() == "torch"


def test_bad_backend_names_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        with use_kernels("cuda"):
            pass
    monkeypatch.setenv("ATTNZOO_KERNELS", "fast")
    with pytest.raises(ValueError, match="ATTNZOO_KERNELS"):
        kernel_backend()


def test_auto_uses_reference_on_cpu():
    x = torch.zeros(2)
    with use_kernels("auto"):
        assert not use_triton(x)
    with use_kernels("torch"):
        assert not use_triton(x)


def test_forced_triton_is_honoured_or_fails_loudly(monkeypatch):
    x = torch.zeros(2)
    with use_kernels("triton"):
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert use_triton(x)
        with pytest.raises(RuntimeError, match="does not support"):
            use_triton(x, supported=False)
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        if not torch.cuda.is_available():
            with pytest.raises(RuntimeError, match="needs CUDA tensors"):
                use_triton(x)


def test_auto_falls_back_while_exporting(monkeypatch):
    monkeypatch.setattr(dispatch, "graph_capture", lambda: True)
    x = torch.zeros(2, device="cuda") if torch.cuda.is_available() else torch.zeros(2)
    with use_kernels("auto"):
        assert not use_triton(x)


def test_auto_fallback_on_cuda_is_logged_once_per_op(monkeypatch, caplog):
    """An unsupported call on CUDA tensors runs the reference under auto, and says so once per op."""
    monkeypatch.setattr(dispatch, "_warned", set())
    cuda_like = torch.zeros(2).as_subclass(_CudaLike)
    with use_kernels("auto"), caplog.at_level("WARNING", logger=dispatch.__name__):
        assert not use_triton(cuda_like, supported=False, op="op_a")
        assert not use_triton(cuda_like, supported=False, op="op_a")
        assert not use_triton(cuda_like, supported=False, op="op_b")
        assert use_triton(cuda_like, op="op_a") == dispatch.triton_available()
    warnings = [r.getMessage() for r in caplog.records if "run the torch reference" in r.getMessage()]
    assert [w.split(":")[0] for w in warnings] == ["op_a", "op_b"]
    assert "shape or dtype" in warnings[0]


def test_backend_override_guards_compiled_code(monkeypatch):
    """fullgraph torch.compile reads the backend in force (and recompiles when it changes)."""
    monkeypatch.delenv("ATTNZOO_KERNELS", raising=False)

    @torch.compile(fullgraph=True, backend="eager")
    def pick(x):
        return x + 1 if kernel_backend() == "torch" else x - 1

    x = torch.zeros(2)
    with use_kernels("torch"):
        assert pick(x).tolist() == [1.0, 1.0]
    with use_kernels("auto"):
        assert pick(x).tolist() == [-1.0, -1.0]


class _CudaLike(torch.Tensor):
    """A CPU tensor that says it is on CUDA, to reach the CUDA branch of the dispatch rule."""

    @property
    def is_cuda(self) -> bool:
        return True
