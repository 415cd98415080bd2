"""The compiled-kernel cache key covers everything that changes the build."""
import os

from ppdistill.ops import loader


def test_build_directory_depends_on_paddle_compiler_flags_and_python(monkeypatch):
    base = loader.build_directory()
    assert base == loader.build_directory()  # stable within one environment
    for name, value in [("_paddle_identity", "3.0.0|abc|/other/venv/paddle"),
                        ("_compiler_identity", "g++|/usr/bin/g++-9|g++ (GCC) 9.5"),
                        ("_python_identity", "3.9.1|cpython-39|"),
                        ("_cpu_flags", "flags: fpu sse2")]:
        with monkeypatch.context() as patch:
            patch.setattr(loader, name, lambda value=value: value)
            assert loader.build_directory() != base, name
    with monkeypatch.context() as patch:
        patch.setattr(loader, "CXX_FLAGS", loader.CXX_FLAGS + ("-g",))
        assert loader.build_directory() != base


def test_extension_dir_and_quiet_loading_restore_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PPDISTILL_EXTENSION_DIR", str(tmp_path))
    assert loader.build_directory().startswith(str(tmp_path) + os.sep)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    with loader._quiet_paddle_logs():
        assert "ignore:No ccache found" in os.environ["PYTHONWARNINGS"]
    assert "PYTHONWARNINGS" not in os.environ
