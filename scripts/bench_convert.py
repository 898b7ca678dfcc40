#!/usr/bin/env python3
"""Benchmark (not a test): seconds to convert and evaluate MiniLM on 64 sentences, beside FP32.

Prints, in one run:
  * model load time;
  * FP32 evaluation of the 64 sentences (sentence embeddings);
  * conversion (rotation + weight quantisation of all 36 linears) + spike evaluation of the
    same sentences, with fidelity;
  * the whole `spikemllm convert` pipeline (load, FP32, MED, main setting, W8/T7 reference,
    report and plots), unless --no-cli.

Usage: .venv/bin/python scripts/bench_convert.py [--wbits 4] [--t-text 4] [--threads N] [--no-cli]
"""

import argparse
import os
import tempfile
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--t-text", type=int, default=4)
    p.add_argument("--weight-quantizer", default=None, help="rtn, mse or gptq (default: ConverterConfig's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-cli", action="store_true", help="skip timing the whole convert command")
    a = p.parse_args()

    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    from spikemllm.sw.config import ConverterConfig
    from spikemllm.sw.convert import convert
    from spikemllm.sw.fidelity import make_workload
    from spikemllm.sw.models import load_model

    print(f"cpu cores visible: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"load average: {os.getloadavg()[0]:.2f}")
    t = time.perf_counter()
    loaded = load_model("minilm")
    wl = make_workload(loaded, 64)
    t_load = time.perf_counter() - t

    t = time.perf_counter()
    ref = wl.run(loaded.model)
    t_fp = time.perf_counter() - t

    wq = {} if a.weight_quantizer is None else dict(weight_quantizer=a.weight_quantizer)
    cfg = ConverterConfig(w_bits=a.wbits, t_text=a.t_text, **wq)
    t = time.perf_counter()
    cm = convert(loaded, cfg)
    if cm.needs_calibration:
        cm.calibrate(lambda m: wl.run_calibration(m, cm.context))
    t_conv = time.perf_counter() - t
    t = time.perf_counter()
    out = wl.run(cm.model, cm.context)
    t_snn = time.perf_counter() - t
    fid = wl.metrics(ref, out)

    print(f"MiniLM, 64 sentences ({wl.eval_tokens} tokens), W{a.wbits} tc-lif Tt={a.t_text} {cfg.weight_quantizer}:")
    print(f"  load model                 {t_load:7.2f} s")
    print(f"  FP32 evaluation            {t_fp:7.2f} s")
    print(f"  convert                    {t_conv:7.2f} s")
    print(f"  spike evaluation           {t_snn:7.2f} s")
    print(f"  convert + evaluate         {t_conv + t_snn:7.2f} s   ({(t_conv + t_snn) / t_fp:.1f}x the FP32 evaluation)")
    print(f"  cosine mean {fid['cosine_mean']:.4f}, min {fid['cosine_min']:.4f}, "
          f"Spearman {fid['spearman_pairwise']:.4f}")
    if not a.no_cli:
        from spikemllm.sw.convert_cmd import convert_and_report
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            convert_and_report("minilm", cfg, os.path.join(d, "out"), progress=False)
            print(f"  whole `spikemllm convert` (in process, with W8/T7 reference, report, plots) "
                  f"{time.perf_counter() - t:7.2f} s")


if __name__ == "__main__":
    main()
