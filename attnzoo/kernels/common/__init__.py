"""What every Triton op repeats, kept once (imported only when Triton is available).

- :mod:`.host`: tile-size and precision rules and :func:`~.host.define_op`, which registers an op,
  its backward op, autograd and fake impls in one call;
- :mod:`.tiles`: ``@triton.jit`` masked row-tile loads / stores and the softmax-gradient tile;
- :mod:`.linear_reduce`: ``@triton.jit`` token-tile reductions of linear attention;
- :mod:`.tuning`: :func:`~.tuning.autotune`, the launch configs every kernel is tuned over;
- :mod:`.chunks`: how a chunked token reduction splits over programs (plain Python, no Triton).
"""
