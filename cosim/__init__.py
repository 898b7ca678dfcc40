"""Co-simulation: cocotb + Verilator testbenches of the exported Verilog (``spikemllm sim``).

The cocotb modules (``tb_engine``, ``tb_kv_cache``, ``bfm``, ``scoreboard``) run inside the
simulator; ``stimulus``, ``runner``, ``regression`` and ``run`` run in the normal
interpreter. See docs/cosim.md.
"""
