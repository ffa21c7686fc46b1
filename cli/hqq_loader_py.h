// The Python loader `impq export --format hqq` writes beside its JSON (kHqqLoaderName). HQQ's
// public APIs cannot take per-layer widths: hqq's own quant_config and transformers' HqqConfig
// both key settings by module kind (hqq/models/base.py name_to_linear_tag; transformers
// quantizers/quantizer_hqq.py takes the last two parts of a name), one setting for every
// layer. The loader puts an HQQLinear on each module by its full name instead.
//
// `plan()` is the whole matching rule and needs neither torch nor hqq, so the tests run it on
// real module names (`python3 impq_hqq_apply.py --plan CONFIG < names`); `apply_allocation`
// needs both and has not run here (neither is installed).
#ifndef IMPQ_CLI_HQQ_LOADER_PY_H_
#define IMPQ_CLI_HQQ_LOADER_PY_H_

namespace impq::cli {

inline constexpr char kHqqLoaderPy[] = R"PY("""Apply an `impq export --format hqq` allocation to a Hugging Face model.

HQQ keys its own settings by module kind (the same for every layer), so this puts an HQQLinear
on each module the allocation names, by its full name ("model.layers.3.mlp.down_proj").

    import torch
    from transformers import AutoModelForCausalLM
    from impq_hqq_apply import apply_allocation
    model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float16)
    apply_allocation(model, "alloc.hqq.json", compute_dtype=torch.float16, device="cuda")

Without torch: `python3 impq_hqq_apply.py --plan alloc.hqq.json < names.txt` prints, for each
module name on stdin, the bits it gets ("keep": left as it is).
"""
import json
import sys


def load_config(path):
    with open(path) as f:
        config = json.load(f)
    if not isinstance(config, dict) or not isinstance(config.get("modules"), dict):
        raise ValueError(path + ": not an impq HQQ export (no \"modules\" object)")
    return config


def plan(module_names, config):
    """{name: BaseQuantizeConfig arguments or None (keep)} for the linear modules `module_names`.

    A module is looked up by its exact full name; one the config does not name is kept. Every
    module the config names must be among `module_names` (else KeyError naming the first).
    """
    modules = config["modules"]
    names = list(module_names)
    present = set(names)
    missing = [n for n in modules if n not in present]
    if missing:
        raise KeyError("%d modules of the allocation are not linear modules of the model, "
                       "first %s" % (len(missing), missing[0]))
    return {name: modules.get(name) for name in names}


def apply_allocation(model, config_path, compute_dtype=None, device="cuda"):
    """Replaces each linear module the allocation quantizes with an HQQLinear, in place."""
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    if compute_dtype is None:
        compute_dtype = torch.float16
    config = load_config(config_path)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    chosen = plan([n for n, _ in linears], config)
    for name, module in linears:
        args = chosen[name]
        if args is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, HQQLinear(module, BaseQuantizeConfig(**args),
                                         compute_dtype=compute_dtype, device=device,
                                         del_orig=True))
    return model


def main(argv):
    if len(argv) != 2 or argv[0] != "--plan":
        sys.stderr.write("usage: impq_hqq_apply.py --plan CONFIG.json < module-names\n")
        return 2
    config = load_config(argv[1])
    names = [line.strip() for line in sys.stdin if line.strip()]
    for name, args in plan(names, config).items():
        print(name, "keep" if args is None else args["nbits"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
)PY";

}  // namespace impq::cli

#endif  // IMPQ_CLI_HQQ_LOADER_PY_H_
