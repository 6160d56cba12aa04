"""``qextract migrate``: a QKeras 0.9 model file rebuilt with qkeras-v3 (Keras 3), written only when proven equal."""

from __future__ import annotations

import argparse

from .options import Command

_SHOWN = ["tensor", "status", "differs_in", "elements", "codes_differ", "max_code_delta", "values_differ"]
_SHOWN += ["format_a", "format_b", "first_index", "raw_differ", "raw_max_ulp"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="OLD", help="QKeras 0.9 model: .h5, or an architecture .json with --weights")
    p.add_argument("--weights", help="weights .h5 for an architecture .json")
    p.add_argument("--out", required=True, metavar="NEW.keras", help="the qkeras-v3 model to write (never OLD)")
    p.add_argument(
        "--reference",
        metavar="EXPORT_DIR",
        help="compare with this export made under QKeras 0.9 (default: QKeras 0.9's values computed from OLD's raw "
        "weights by the numpy engine)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never OLD)")
    p.add_argument("--all", action="store_true", help="list every row, not only those that differ")


def run(args: argparse.Namespace) -> int:
    from ..migration import migrate
    from .running import quiet_tensorflow

    quiet_tensorflow(args)
    if not args.debug:
        from .._keras import start_quietly

        start_quietly()
    r = migrate(args.model, weights=args.weights, out=args.out, reference=args.reference, force=args.force)
    if r.failures:
        if len(r.differences):
            print(r.differences[[c for c in _SHOWN if c in r.table]].to_string(index=False, na_rep="-"))
        for f in r.failures:
            print(f"not migrated: layer '{f.layer}' ({f.class_name}): {f.reason}")
        print(f"{len(r.failures)} layer(s) could not be migrated; nothing written")
        return r.exit_code
    for line in r.header:
        print(f"export: {line}")
    rows = r.table if args.all else r.differences
    if len(rows):
        shown = [c for c in _SHOWN if c in rows]
        print(rows[shown].to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.6g}"))
    tensors = int((~r.table["tensor"].str.endswith(")")).sum())
    outputs = int(r.table["tensor"].str.endswith("/(output)").sum())
    others = len(r.table) - tensors - outputs
    if not r.migrated:
        print(f"{len(r.differences)} of {len(r.table)} rows differ from {r.reference}; nothing written")
        return r.exit_code
    print(
        f"same: {tensors} tensors (codes, scales, formats, shapes) and {others} activation formats equal "
        f"{r.reference}; {outputs} layer outputs match NumPy's forward pass from those codes"
    )
    for key in r.raw_last_bit:
        row = r.table[r.table["tensor"] == key].iloc[0]
        why = f" ({row['note']})" if isinstance(row["note"], str) else ""
        print(
            f"note: {key}: codes and scales equal; {int(row['raw_differ'])} of {int(row['elements'])} raw floats "
            f"differ, by at most {int(row['raw_max_ulp'])} unit(s) in the last place{why}"
        )
    print(f"wrote {r.written}")
    return 0


COMMAND = Command(
    "migrate",
    "rebuild a QKeras 0.9 model file with qkeras-v3 (Keras 3), written only if its codes equal QKeras 0.9's",
    add_arguments,
    run,
)
