import pytest

from zbench import ConfigError, default_config_path, load_config


def test_shipped_configs_parse():
    demo = load_config()
    assert default_config_path().name == "demo.toml"
    assert demo.model_path.name == "zbench-demo" and demo.model_path.parent.name == "models"
    turbo = load_config(default_config_path().parent / "zimage-turbo.toml")
    assert (turbo.steps, turbo.guidance, turbo.width, turbo.height) == (8, 0.0, 1024, 1024)
    assert turbo.model_path.name == "Z-Image-Turbo" and turbo.repo_id == "Tongyi-MAI/Z-Image-Turbo"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\npath = "x"\nsteps = 3\n', r"unknown setting model\.steps"),
        ('[modle]\npath = "x"\n', r"unknown section \[modle\]"),
        ('[model]\npath = "x"\ndtype = "fp8"\n', "dtype should be one of"),
        ('[model]\npath = "x"\n[render]\nwidth = 100\n', "multiple of 16"),
        ("[render]\nsteps = 3\n", "needs `path`"),
        ("[model\n", "not valid TOML"),
        ('[model]\npath = "x"\n[signals]\nscorers = "a:b"\n', r"signals\.scorers should be a list of texts"),
        ('[model]\npath = "x"\n[signals]\nseeds = [1.5]\n', r"signals\.seeds should be seeds"),
        ('[model]\npath = "x"\n[signals]\nshortlist = 40\n', "2 to 12 checkpoints"),
        ('[model]\npath = "x"\n[signals]\nclips = "x"\n', r"unknown setting signals\.clips"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.toml"
    path.write_text('[model]\npath = "../models/m"\n[loras]\ndir = "../loras/run"\n')
    config = load_config(path)
    assert config.model_path == tmp_path / "models" / "m" and config.lora_dir == tmp_path / "loras" / "run"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_a_missing_model_names_the_configs_own_fix(tmp_path):
    from zbench import BaseModelError, load_base

    demo = default_config_path().read_text().replace('path = "../models/zbench-demo"', 'path = "nowhere"')
    path = tmp_path / "demo.toml"
    path.write_text(demo)
    with pytest.raises(BaseModelError, match=r"To fix: build the demo: python -m zbench demo build --quick"):
        load_base(load_config(path))
    plain = tmp_path / "plain.toml"
    plain.write_text('[model]\npath = "nowhere"\n')  # no repo_id: nothing is asked of the hub
    with pytest.raises(BaseModelError, match=r"To fix: download the model there \(huggingface-cli download <repo id>"):
        load_base(load_config(plain))


def test_signals_settings(tmp_path):
    (tmp_path / "data").mkdir()
    path = tmp_path / "c.toml"
    path.write_text(
        '[model]\npath = "m"\n[signals]\nseeds = [1, 2, 3]\ndataset = "data"\nclip = "openai/clip-vit-base-patch32"\n'
        'scorers = ["mypkg.faces:identity"]\nquality = false\n'
    )
    config = load_config(path)
    assert config.signal_seeds == "1, 2, 3" and config.signal_dataset == tmp_path / "data"
    assert config.signal_clip == "openai/clip-vit-base-patch32"  # a hub id stays a hub id
    assert config.signal_scorers == ("mypkg.faces:identity",) and config.signal_quality is False
    demo = load_config()
    assert demo.signal_scorers == ("zbench.demo.metrics:scene_score",) and demo.signal_dataset.is_dir()
    assert demo.signal_prompts_file.is_file() and demo.shortlist_size == 6
