"""Install amuro's SLURM profile where `snakemake --profile slurm` finds it, with your cluster's settings.

    python profiles/slurm/install.py --partition gpu --account myproject [--gpu-model a100]

Snakemake resolves a bare profile name in the current directory, then in the user's and the system's config
directories (~/.config/snakemake/slurm, /etc/xdg/snakemake/slurm), never in profiles/. This writes
profiles/slurm/profile.yaml, comments kept, to <user config dir>/snakemake/slurm/profile.yaml (or --dest) with the
partition, account and GPU model filled in, and, on a cluster without accounting, squeue as the status command and
no account. Run it again after profiles/slurm/profile.yaml changes. Standard library only (plus Snakemake's own
platformdirs for the config directory).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = re.compile(r"^[A-Za-z0-9_.,-]+$")


def user_profile_dir() -> Path:
    """Where Snakemake looks for `--profile slurm` after the current directory (it uses platformdirs itself)."""
    try:
        from platformdirs import user_config_dir

        return Path(user_config_dir("snakemake", "snakemake")) / "slurm"
    except ImportError:
        base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
        return Path(base) / "snakemake" / "slurm"


def has_accounting() -> tuple[bool, str]:
    """Whether sacct can answer (slurmdbd, or accounting_storage other than none)."""
    if shutil.which("sacct") is None:
        return False, "sacct is not installed"
    run = subprocess.run(["sacct", "-X", "-n", "-S", "now"], capture_output=True, text=True)
    if run.returncode != 0:
        return False, (run.stderr.strip() or f"sacct exited with {run.returncode}")
    return True, ""


def min_job_age() -> int | None:
    """slurmctld's MinJobAge: how long squeue still shows a finished job."""
    if shutil.which("scontrol") is None:
        return None
    run = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    m = re.search(r"^MinJobAge\s*=\s*(\d+)", run.stdout, re.M)
    return int(m.group(1)) if m else None


def render(template: str, partition: str | None, account: str | None, gpu_model: str | None,
           accounting: bool) -> str:
    """The template with its commented placeholders for the given settings switched on."""
    values = {"slurm_partition": partition, "slurm_account": None if not accounting else account,
              "gpu_model": gpu_model}
    out = []
    for line in template.splitlines():
        m = re.match(r"^(\s*)# (slurm_partition|slurm_account|gpu_model): \"'<[^>]+>'\"(\s+\(.*\))?$", line)
        if m and values[m.group(2)]:
            line = f"{m.group(1)}{m.group(2)}: \"'{values[m.group(2)]}'\""
        elif not accounting and line in ("# slurm-status-command: squeue", "# slurm-no-account: true"):
            line = line[2:]
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partition", help="SLURM partition of the GPU jobs (default: the cluster's default)")
    parser.add_argument("--account", help="SLURM account to charge (ignored without accounting)")
    parser.add_argument("--gpu-model", help="GPU type for sbatch --gpus=<model>:<n>, e.g. a100 (default: any)")
    parser.add_argument("--dest", type=Path, help="profile directory to write (default: %(default)s)",
                        default=user_profile_dir())
    parser.add_argument("--template", type=Path, default=HERE / "profile.yaml",
                        help="profile to install (default: profiles/slurm/profile.yaml)")
    parser.add_argument("--accounting", choices=["auto", "yes", "no"], default="auto",
                        help="whether the cluster has accounting (sacct); auto asks sacct")
    parser.add_argument("--force", action="store_true", help="overwrite an existing profile")
    args = parser.parse_args(argv)

    for key in ("partition", "account", "gpu_model"):
        value = getattr(args, key)
        if value is not None and not NAME.match(value):
            parser.error(f"--{key.replace('_', '-')} {value!r}: letters, digits, '_', '.', ',', '-' only")
    if args.accounting == "auto":
        accounting, why = has_accounting()
    else:
        accounting, why = args.accounting == "yes", "--accounting no"
    if not accounting:
        print(f"install.py: no accounting ({why}): job states from squeue, no account", file=sys.stderr)
        if args.account:
            print(f"install.py: --account {args.account} left out: the SLURM plugin checks accounts with sacctmgr",
                  file=sys.stderr)
        age = min_job_age()
        if age is not None and age < 300:
            print(f"install.py: warning: MinJobAge is {age} s; squeue forgets finished jobs after that, and Snakemake "
                  "may then miss a job's end. Ask the admins for MinJobAge >= 300.", file=sys.stderr)

    target = args.dest / "profile.yaml"
    if target.exists() and not args.force:
        print(f"install.py: {target} exists; --force overwrites it", file=sys.stderr)
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    target.write_text(render(args.template.read_text(), args.partition, args.account, args.gpu_model, accounting))
    print(f"install.py: wrote {target}; run `snakemake --profile slurm` from the repository root")
    return 0


if __name__ == "__main__":
    sys.exit(main())
