import pytest

from arxiv_assets.ml import hardware
from arxiv_assets.ml.hardware import ISA_CAP_ENV_VAR, capped_flags, cpu_has_fast_bf16, cpu_has_vnni

AMX_XEON = frozenset({"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                      "amx_bf16", "amx_int8", "amx_tile"})


@pytest.mark.parametrize(("cap", "kept"), [
    ("AVX2", {"sse4_1", "avx", "avx2", "fma"}),
    ("avx512_core_vnni", {"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}),
    ("AVX512_CORE_BF16", AMX_XEON - {"amx_bf16", "amx_int8", "amx_tile"}),
    ("AVX512_CORE_AMX", AMX_XEON),
    ("", AMX_XEON),  # no cap
    ("NOT_A_LEVEL", AMX_XEON),  # oneDNN ignores what it does not know; so do we
])
def test_a_onednn_isa_cap_drops_the_flags_above_it(cap: str, kept: set[str]) -> None:
    assert capped_flags(AMX_XEON, cap) == kept


def test_an_amx_xeon_capped_at_avx2_chooses_as_an_avx2_only_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.Path, "read_text", lambda self: "flags\t\t: " + " ".join(sorted(AMX_XEON)))
    monkeypatch.setattr(hardware.Path, "exists", lambda self: True)
    hardware.cpu_flags.cache_clear()
    try:
        assert cpu_has_fast_bf16() and cpu_has_vnni()
        monkeypatch.setenv(ISA_CAP_ENV_VAR, "AVX2")
        hardware.cpu_flags.cache_clear()
        assert not cpu_has_fast_bf16() and not cpu_has_vnni()  # fp32 training, no int8 preference
    finally:
        monkeypatch.undo()
        hardware.cpu_flags.cache_clear()
