"""``export_c``: a bundle's whole policy as C99 source in a folder (``rlport export --format c -o DIR``).

Example:
    >>> export_c(rlport.Bundle.load("cartpole.rlp"), "cartpole_c")   # doctest: +SKIP
    PosixPath('cartpole_c')
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rlport.backends.c.generate import Generated, generate
from rlport.bundle.atomic import remove_stale_temps, temp_path, write_atomic_group
from rlport.errors import BundleError

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["FILES", "export_c"]

FILES = ("rlport_policy.h", "rlport_policy.c", "README.md")
"""The files an export writes, in this order."""


def export_c(bundle: Bundle, out_dir: str | os.PathLike, opset: int | None = None) -> Path:
    """Write the bundle's policy as C99: ``rlport_policy.h``, ``rlport_policy.c`` and ``README.md`` in ``out_dir``.

    The whole policy is there: observation pre-processing (normalisation with its clip, one-hot,
    image scaling), the network, and the action (argmax, masks, clip, tanh-unsquash to the
    bounds); acting deterministically, or sampling from caller-provided uniform numbers. The
    files compile with ``-std=c99 -Wall -Wextra -Werror -pedantic`` (gcc, clang); weights are
    ``static const``; there is no malloc, no recursion, and no mutable global but the static
    scratch arenas sized at export. The folder is made whole or not at all: files are written
    to a temporary folder renamed into place (an existing folder gets its three files replaced
    all or nothing).

    Args:
        bundle: the bundle to export.
        out_dir: the folder to write (created; its parent must exist).
        opset: ignored (the CLI passes every writer its ``--opset``).

    Returns:
        The folder written.

    Raises:
        UnsupportedError: the graph uses an op or a dtype the C export lacks (named), before anything is written.
        BundleError: ``out_dir`` is a file or its parent folder does not exist, or a write failed.
    """
    del opset
    generated = generate(bundle)
    files = {"rlport_policy.h": generated.header, "rlport_policy.c": generated.source, "README.md": readme(generated)}
    out = Path(out_dir)
    if out.is_dir():
        write_atomic_group([(out / name, files[name].encode("utf-8"), f"the C export's {name}") for name in FILES])
        return out
    if out.exists() or out.is_symlink():
        raise BundleError(f"cannot write the C export to {str(out)!r}: it is a file; give a folder (-o DIR)")
    if not out.parent.is_dir():
        raise BundleError(
            f"cannot write the C export to {str(out)!r}: the directory {str(out.parent)!r} does not exist; "
            "create it first"
        )
    remove_stale_temps(out)
    work = temp_path(out)
    try:
        work.mkdir()
        for name in FILES:
            (work / name).write_text(files[name], encoding="utf-8")
        work.rename(out)
    except OSError as exc:
        raise BundleError(f"cannot write the C export to {str(out)!r}: {exc.strerror or exc}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return out


def _key_text(key: tuple[str, ...] | None, k: int) -> str:
    """A dict key for the README's table: itself when it is a plain name, else its macro (a name is untrusted)."""
    text = ".".join(key or ())
    if not text:
        return "(the observation)"
    return f"`{text}`" if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text) else f"see `RLPORT_OBS{k}_KEY`"


def readme(g: Generated) -> str:
    """The README of an export: the interface in words and a usage example."""
    leaves = "\n".join(
        f"| `obs{k}` | {_key_text(leaf.key, k)} | {leaf.dtype} | {'x'.join(map(str, leaf.shape)) or 1} |"
        for k, leaf in enumerate(g.observations)
    )
    mask = "An action mask (`RLPORT_ACTION_MASK_SIZE` flags, 1 = allowed) may be passed; `NULL` allows every action."
    states = (
        f"The policy is recurrent: `rlport_state` holds {len(g.states)} arrays, zeros at an episode's start "
        "(`rlport_policy_reset`), passed to every call and updated by it."
        if g.states
        else "The policy is not recurrent: pass `NULL` as `state`."
    )
    return f"""# A policy exported by rlport (C99)

`rlport export --format c` wrote these files from a bundle: `rlport_policy.h` (the interface: sizes
and spaces as macros, the structs, the functions) and `rlport_policy.c` (the whole policy: observation
pre-processing, the network, the action). They compile with any C99 compiler:

    cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -c rlport_policy.c

and link with `-lm`. Weights are `static const` (flash on a microcontroller); the values live in static
scratch arenas sized at export ({g.scratch_bytes} bytes): no malloc, no recursion, no other mutable
global. A call is therefore not reentrant: one thread at a time. Define `RLPORT_DETERMINISTIC_ONLY`
to leave the sampling code out, and `RLPORT_NO_BATCH` to leave out `rlport_policy_act_batch`.

## Observation

`rlport_observation` has one member per observation leaf, in this order (a dict observation's keys in
the bundle's order; `RLPORT_OBSk_KEY` names each). Pass raw observations, in the observation space's
layout and dtype: normalisation, its clip, one-hot encoding and image scaling are inside the policy.

| member | key | dtype | shape |
| --- | --- | --- | --- |
{leaves}

## Action

`rlport_action_t` is {g.action_dtype}; a call writes `RLPORT_ACTION_SIZE` of them (already clipped or
rescaled to the action space's bounds). {states}
{mask if g.mask_size else ""}

`uniforms` = `NULL` acts deterministically (the distribution's mode). To sample, pass
`RLPORT_UNIFORMS` ({g.uniforms}) uniform random numbers in [0, 1) from your own source: categorical
actions use Gumbel noise, Gaussian ones Box-Muller normals.

## Example

```c
#include <stdio.h>
#include "rlport_policy.h"

int main(void)
{{
    rlport_observation obs = {{0}};   /* fill obs.obs0 ... from the sensors */
    rlport_state state;
    rlport_action_t action[RLPORT_ACTION_SIZE];
    rlport_policy_reset(&state);
    if (rlport_policy_act(&obs, &state, 0.0f, NULL, NULL, action) != RLPORT_OK) return 1;
    printf("%g\\n", (double)action[0]);
    return 0;
}}
```

Return codes: `RLPORT_OK`, `RLPORT_ERR_OBSERVATION` (a discrete observation outside its space),
`RLPORT_ERR_MASK` (a mask that allows no action), `RLPORT_ERR_SAMPLING` (uniforms given to a build
with `RLPORT_DETERMINISTIC_ONLY`).
"""
