"""The text of an export's two files: ``rlport_policy.h`` (sizes and spaces as macros, structs, functions)
and ``rlport_policy.c`` (constants, helpers, arenas, the run functions, the public functions).

Names from the bundle reach the text only as escaped string literals (a dict key's
``RLPORT_OBSk_KEY``). Needs numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.c.emit import MASK_ERROR, OBSERVATION_ERROR, SAMPLING_ERROR
from rlport.backends.c.program import Program, ctype_of, literal, short_name, string_literal
from rlport.bundle.spaces import BoxSpec, DiscreteSpec, MultiBinarySpec, MultiDiscreteSpec, leaves

if TYPE_CHECKING:
    from rlport.backends.c.generate import Generated
    from rlport.bundle.bundle import Bundle

__all__ = ["DTYPE_OF", "header_text", "source_text"]

_BOUNDS_LIMIT = 64
"""Box action bounds of up to this many elements are written as macros."""

DTYPE_OF = {"float": "float32", "double": "float64", "unsigned char": "uint8", "int": "int32"} | {
    f"{k}int{b}_t": f"{k}int{b}" for k in ("", "u") for b in (8, 16, 32, 64)
}


def _space_macros(prefix: str, space: Any) -> list[str]:
    if isinstance(space, DiscreteSpec):
        return [f'#define {prefix}_SPACE "discrete"', f"#define {prefix}_N {int(space.n)}",
                f"#define {prefix}_START {int(space.start)}"]  # fmt: skip
    if isinstance(space, MultiDiscreteSpec):
        return [f'#define {prefix}_SPACE "multi_discrete"']
    if isinstance(space, MultiBinarySpec):
        return [f'#define {prefix}_SPACE "multi_binary"']
    lines = [f'#define {prefix}_SPACE "box"']
    if isinstance(space, BoxSpec) and prefix == "RLPORT_ACTION" and space.low.size <= _BOUNDS_LIMIT:
        for name, bound in (("LOW", space.low), ("HIGH", space.high)):
            flat = np.broadcast_to(bound, space.shape).reshape(-1).astype(np.float64)
            lines.append(f"#define {prefix}_{name} {{{', '.join(literal(v, 'double') for v in flat.tolist())}}}")
    return lines


def header_text(bundle: Bundle, g: Generated, action_ctype: str) -> str:
    spaces = dict(leaves(bundle.observation_space))
    lines = [
        "/* rlport_policy.h: a policy exported by rlport (rlport export --format c); generated, do not edit.",
        "   See README.md beside it for the interface and a usage example. */",
        "#ifndef RLPORT_POLICY_H",
        "#define RLPORT_POLICY_H",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "/* observation leaves, in the order of the struct's members (a dict's keys in the bundle's order) */",
        f"#define RLPORT_OBS_LEAVES {len(g.observations)}",
    ]
    members = []
    for k, leaf in enumerate(g.observations):
        prefix = f"RLPORT_OBS{k}"
        lines += [
            f"#define {prefix}_KEY {string_literal('.'.join(leaf.key or ()))}",
            f"#define {prefix}_SIZE {leaf.size}",
            f'#define {prefix}_SHAPE "{"x".join(str(d) for d in leaf.shape) or "1"}"',
            f'#define {prefix}_DTYPE "{leaf.dtype}"',
            *_space_macros(prefix, spaces[leaf.key or ()]),
        ]
        members.append(f"    {ctype_of(leaf.dtype)} obs{k}[{prefix}_SIZE];")
    lines += ["", "/* the action */", f"#define RLPORT_ACTION_SIZE {int(np.prod(g.action_shape, dtype=np.int64))}",
              f'#define RLPORT_ACTION_DTYPE "{g.action_dtype}"', *_space_macros("RLPORT_ACTION", bundle.action_space),
              "", "/* recurrent states (zeros at an episode's start: rlport_policy_reset) */",
              f"#define RLPORT_RECURRENT {1 if g.states else 0}", f"#define RLPORT_STATES {len(g.states)}"]  # fmt: skip
    state_members = []
    for k, leaf in enumerate(g.states):
        lines.append(f"#define RLPORT_STATE{k}_SIZE {leaf.size}")
        state_members.append(f"    {ctype_of(leaf.dtype)} state{k}[RLPORT_STATE{k}_SIZE];")
    lines += [
        f"#define RLPORT_ACTION_MASK_SIZE {g.mask_size}",
        f"#define RLPORT_UNIFORMS {g.uniforms}",
        f"#define RLPORT_SCRATCH_BYTES {g.scratch_bytes} /* the static scratch arenas, all modes */",
        "",
        "/* return codes */",
        "#define RLPORT_OK 0",
        f"#define RLPORT_ERR_OBSERVATION {OBSERVATION_ERROR} /* a discrete observation outside its space */",
        f"#define RLPORT_ERR_MASK {MASK_ERROR} /* an action mask allows no action */",
        f"#define RLPORT_ERR_SAMPLING {SAMPLING_ERROR} /* uniforms given, but built with RLPORT_DETERMINISTIC_ONLY */",
        "",
        "typedef struct rlport_observation {",
        *members,
        "} rlport_observation;",
        "",
        "typedef struct rlport_state {",
        *(state_members or ["    unsigned char unused; /* not recurrent */"]),
        "} rlport_state;",
        "",
        f"typedef {action_ctype} rlport_action_t;",
        "",
        "/* Act on one observation. state: in/out (may be NULL when RLPORT_RECURRENT is 0); episode_start: 1 at",
        "   an episode's first step (resets the state); action_mask: RLPORT_ACTION_MASK_SIZE flags or NULL (all",
        "   allowed); uniforms: NULL to act deterministically, else RLPORT_UNIFORMS numbers in [0, 1) to sample.",
        "   Returns RLPORT_OK or an RLPORT_ERR_ code. Not reentrant: the scratch arenas are static. */",
        "int rlport_policy_act(const rlport_observation *obs, rlport_state *state, float episode_start,",
        "                      const unsigned char *action_mask, const float *uniforms,",
        "                      rlport_action_t action[RLPORT_ACTION_SIZE]);",
        "",
        "/* The state of an episode's start (zeros). */",
        "void rlport_policy_reset(rlport_state *state);",
        "",
        "#ifndef RLPORT_NO_BATCH",
        "/* n rows: obs[k] holds n rows of leaf k, states[k] n rows of state k (row-major, batch first),",
        "   episode_starts n numbers (or NULL), action_masks n rows (or NULL), uniforms n rows (or NULL),",
        "   actions n rows. Stops at the first row that fails and returns its code. */",
        "int rlport_policy_act_batch(long n, const void *const *obs, void *const *states,",
        "                            const float *episode_starts, const unsigned char *action_masks,",
        "                            const float *uniforms, rlport_action_t *actions);",
        "#endif",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        "#endif /* RLPORT_POLICY_H */",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


_SIGNATURE = (
    "(const rlport_observation *obs, rlport_state *state, float episode_start,\n"
    "    const unsigned char *action_mask, const float *uniforms, rlport_action_t *action)"
)


def source_text(p: Program, bodies: dict[bool, list[str]], g: Generated) -> str:
    sizes = p.arena_sizes()
    # an arena the deterministic run uses is always compiled; one only the sampled run uses goes with it
    arenas = {
        mode: [
            f"static {c} rl_{short_name(c)}_arena[{max(s.values())}];" for c, s in sizes.items() if (True in s) == mode
        ]
        for mode in (True, False)
    }
    unused = "    (void)obs; (void)state; (void)episode_start; (void)action_mask; (void)uniforms;"
    lines = [
        "/* rlport_policy.c: a policy exported by rlport (rlport export --format c); generated, do not edit. */",
        '#include "rlport_policy.h"',
        "",
        "#include <math.h>",
        "#include <string.h>",
        "",
        *p.symbols(True),
        *arenas[True],
        "",
        f"static int rl_run_deterministic{_SIGNATURE}",
        "{",
        unused,
        *bodies[True],
        "}",
        "",
        "#ifndef RLPORT_DETERMINISTIC_ONLY",
        *p.symbols(False),
        *arenas[False],
        "",
        f"static int rl_run_sampled{_SIGNATURE}",
        "{",
        unused,
        *bodies[False],
        "}",
        "#endif",
        "",
        "int rlport_policy_act(const rlport_observation *obs, rlport_state *state, float episode_start,",
        "                      const unsigned char *action_mask, const float *uniforms,",
        "                      rlport_action_t action[RLPORT_ACTION_SIZE])",
        "{",
        "    if (!uniforms) return rl_run_deterministic(obs, state, episode_start, action_mask, 0, action);",
        "#ifndef RLPORT_DETERMINISTIC_ONLY",
        "    return rl_run_sampled(obs, state, episode_start, action_mask, uniforms, action);",
        "#else",
        f"    return {SAMPLING_ERROR};",
        "#endif",
        "}",
        "",
        "void rlport_policy_reset(rlport_state *state)",
        "{",
        "    memset(state, 0, sizeof *state);",
        "}",
        "",
        *_batch(g),
    ]
    return "\n".join(lines) + "\n"


def _batch(g: Generated) -> list[str]:
    lines = [
        "#ifndef RLPORT_NO_BATCH",
        "int rlport_policy_act_batch(long n, const void *const *obs, void *const *states,",
        "                            const float *episode_starts, const unsigned char *action_masks,",
        "                            const float *uniforms, rlport_action_t *actions)",
        "{",
        "    rlport_observation o;",
        "    rlport_state s;",
        "    (void)states;",
        "    memset(&s, 0, sizeof s);",
        "    for (long i = 0; i < n; ++i) {",
        "        int status;",
    ]
    for k in range(len(g.observations)):
        lines.append(
            f"        memcpy(o.obs{k}, (const char *)obs[{k}] + (size_t)i * sizeof o.obs{k}, sizeof o.obs{k});"
        )
    for k in range(len(g.states)):
        lines.append(
            f"        memcpy(s.state{k}, (char *)states[{k}] + (size_t)i * sizeof s.state{k}, sizeof s.state{k});"
        )
    lines += [
        "        status = rlport_policy_act(&o, &s, episode_starts ? episode_starts[i] : 0.0f,",
        "                                   action_masks ? action_masks + i * RLPORT_ACTION_MASK_SIZE : 0,",
        "                                   uniforms ? uniforms + i * RLPORT_UNIFORMS : 0,",
        "                                   actions + i * RLPORT_ACTION_SIZE);",
        "        if (status) return status;",
    ]
    for k in range(len(g.states)):
        lines.append(
            f"        memcpy((char *)states[{k}] + (size_t)i * sizeof s.state{k}, s.state{k}, sizeof s.state{k});"
        )
    lines += ["    }", "    return 0;", "}", "#endif"]
    return lines
