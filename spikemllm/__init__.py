"""spikemllm: spike-driven (multimodal) LLM inference, from Hugging Face models to RTL.

Subpackages: :mod:`spikemllm.sw` (converter and bit-exact reference), :mod:`spikemllm.hw`
(Amaranth gateware and flows), :mod:`spikemllm.cosim` (cocotb testbenches).
"""

__version__ = "0.1.0"
