"""trainer.precision=auto: bfloat16 where the hardware multiplies it natively, float32 elsewhere."""

import pytest

from unetlab.precision import cpu_has_amx_bf16, resolve


@pytest.mark.parametrize("gpus, amx, policy", [
    ([(8, 0)], False, "mixed_bfloat16"),           # an A100
    ([(9, 0), (8, 6)], True, "mixed_bfloat16"),
    ([(8, 0), (7, 5)], True, "float32"),           # one GPU without bfloat16 units: the replicas must agree
    ([], True, "mixed_bfloat16"),                  # a Sapphire Rapids CPU
    ([], False, "float32"),
])
def test_auto_picks_bfloat16_only_where_it_is_native(gpus, amx, policy):
    chosen, why = resolve("auto", gpus=gpus, amx=amx)
    assert chosen == policy and why.startswith("auto: ")


def test_a_named_policy_is_kept_whatever_the_hardware():
    assert resolve("mixed_float16", gpus=[], amx=True) == ("mixed_float16", "as configured")


def test_the_amx_flag_is_read_from_the_cpu_flags(tmp_path):
    with_amx, without, unreadable = tmp_path / "a", tmp_path / "b", tmp_path / "missing"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16\nbugs\t\t: amx_bf16\n")
    assert cpu_has_amx_bf16(with_amx) and not cpu_has_amx_bf16(without) and not cpu_has_amx_bf16(unreadable)
