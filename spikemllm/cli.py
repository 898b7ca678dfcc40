"""The ``spikemllm`` command line.

Each subcommand lives in its own module, which provides ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``spikemllm --help`` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: name -> (module, one-line summary)
COMMANDS = {
    "convert": ("spikemllm.sw.convert_cmd",
                "convert a Hugging Face model to spike form and write fidelity/energy reports"),
    "golden": ("spikemllm.sw.golden",
               "export (or --verify) golden vectors of one real layer: weights, spike events, expected outputs"),
    "verilog": ("spikemllm.hw.export",
                "generate the accelerator's Verilog (one .v per top) and params.json"),
    "sim": ("spikemllm.cosim.run",
            "run the cocotb + Verilator regression on real-model golden vectors and print a summary"),
    "synth": ("spikemllm.hw.synth",
              "synthesise with Yosys / nextpnr / OpenSTA: area, fmax, power, energy per SOP"),
    "report": ("spikemllm.sw.system_report",
               "system model: tokens/s and tokens/J of the accelerator against an FP16 GPU"),
}


def _top_parser():
    p = argparse.ArgumentParser(
        prog="spikemllm",
        description="Spike-driven LLM / MLLM inference toolkit: convert a Hugging Face model to "
                    "ternary TC-LIF spikes, export golden vectors, generate Amaranth RTL, replay "
                    "the spikes under cocotb + Verilator, synthesise, and compare with an FP16 GPU.",
        epilog="Run 'spikemllm COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"spikemllm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return p


def _load(name):
    module = COMMANDS[name][0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    mod = _load(name)
    if mod is None:
        print(f"spikemllm {name}: not implemented yet in this version "
              f"({COMMANDS[name][1]}).", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"spikemllm {name}",
                                     description=getattr(mod, "DESCRIPTION", COMMANDS[name][1]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(mod.run(args) or 0)
    except BrokenPipeError:
        # output piped into `head` and closed early: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"spikemllm {name}: interrupted", file=sys.stderr)
        return 130
    except ValueError as e:
        # Bad input: one clear line, no traceback.
        print(f"spikemllm {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
