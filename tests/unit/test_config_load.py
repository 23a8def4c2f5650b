"""Loading valid configurations: the example, directories, defaults and the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.config import loader, steps

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "promotion"


class TestExample:
    def test_example_validates(self) -> None:
        """The promotion example of SPEC.md's story is valid."""
        result = CliRunner().invoke(cli, ["validate", str(EXAMPLE)])
        assert result.exit_code == 0, result.output
        assert "environments: test, pre-release, production" in result.output

    def test_example_tells_the_story(self) -> None:
        """The example wires production to require pre-release and take its image from it."""
        definitions = loader.load(EXAMPLE)
        production = definitions.environment("production")
        assert production is not None and production.requires == ["pre-release"]
        assert definitions.registries["main"].internal_url is not None
        pipeline = definitions.pipelines["production"]
        assert pipeline.source is not None and pipeline.source.pipeline == "prerelease-cd"
        alternative = definitions.pipelines["production-from-registry"]
        assert alternative.source is not None and alternative.source.artifact == "myapp"
        cd = definitions.pipelines["prerelease-cd"]
        trigger = cd.triggers[0].registry_event
        assert trigger is not None and trigger.events == ["scan_completed"]
        assert [type(s) for s in cd.steps] == [steps.DeployStep, steps.ApprovalStep]
        build = definitions.pipelines["prerelease-ci"].steps[0]
        assert isinstance(build, steps.BuildStep) and build.tag == "myapp-V${R_VERSION}"

    def test_validate_through_the_console_script(self) -> None:
        """`conveyor validate examples/promotion` exits 0 as a real process."""
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", "validate", str(EXAMPLE)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


class TestLocations:
    def test_default_is_conveyor_yaml_in_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a path, ./conveyor.yaml is read."""
        (tmp_path / "conveyor.yaml").write_text("registries:\n  r: {url: https://r.example}\n")
        monkeypatch.chdir(tmp_path)
        assert list(loader.load(None).registries) == ["r"]

    def test_config_env_variable(self, tmp_path: Path) -> None:
        """CONVEYOR_CONFIG points commands at a config."""
        path = tmp_path / "x.yaml"
        path.write_text("registries:\n  r: {url: https://r.example}\n")
        result = CliRunner().invoke(cli, ["validate"], env={"CONVEYOR_CONFIG": str(path)})
        assert result.exit_code == 0, result.output
        assert "registries: r" in result.output

    def test_directory_merges_conveyor_d(self, tmp_path: Path) -> None:
        """A directory's conveyor.yaml and conveyor.d/*.yaml are merged."""
        (tmp_path / "conveyor.yaml").write_text("registries:\n  r: {url: https://r.example}\n")
        (tmp_path / "conveyor.d").mkdir()
        (tmp_path / "conveyor.d" / "s.yaml").write_text(
            "sources:\n  s: {registry: r, repository: team/s}\n"
        )
        definitions = loader.load(tmp_path)
        assert list(definitions.sources) == ["s"]

    @pytest.mark.parametrize(
        ("written", "size"),
        [("16MiB", 16 * 1024**2), ("512 KiB", 512 * 1024), ("20MB", 20_000_000), (65536, 65536)],
    )
    def test_chunk_size_units(self, tmp_path: Path, written: object, size: int) -> None:
        """A registry's `chunk_size` takes bytes or a size with a binary or decimal unit."""
        path = tmp_path / "conveyor.yaml"
        path.write_text(f"registries:\n  r: {{url: https://r.example, chunk_size: {written}}}\n")
        assert loader.load(path).registries["r"].chunk_size == size

    def test_parameters_shorthand(self, tmp_path: Path) -> None:
        """`R_VERSION: 1.4` is short for a parameter with that default, kept as text."""
        path = tmp_path / "c.yaml"
        path.write_text(
            "pipelines:\n  p:\n    parameters: {R_VERSION: 1.4}\n"
            "    steps: [{type: command, run: 'true'}]\n"
        )
        parameter = loader.load(path).pipelines["p"].parameters["R_VERSION"]
        assert parameter.default == "1.4"


def test_schema_is_json_schema_with_every_section() -> None:
    """`conveyor schema` prints a JSON Schema naming every top-level section."""
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == set(loader.SECTIONS)
    assert schema["additionalProperties"] is False
