"""The documentation: the MkDocs site builds without warnings, the README stays a short front door."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}\n{result.stdout}"


def test_readme_is_short_with_quick_start():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 10_000, f"README.md has {len(text)} characters (at most 10,000)"
    assert "make demo" in text
    assert "make test" in text
