"""`edgepipe deploy --mqtt/--serve/--roi`: the flags reach the service, the secrets
(MQTT password, serve token) reach it through a 0600 environment file on the
device and nowhere else: not the unit's command line, not the output, not the logs."""

from __future__ import annotations

import json
import os
import stat

import pytest

from edgepipe.cli import main

from mqtt_broker import Mosquitto, Subscriber

PASSWORD, TOKEN = "mqtt-s3cret-pw", "serve-s3cret-token"


@pytest.mark.skipif(not os.path.exists("/usr/sbin/mosquitto"), reason="Debian's mosquitto is not installed")
def test_deploy_passes_outputs_and_keeps_secrets_in_a_0600_env_file(
        tiny_bundle, sshd, deploy_argv, prefix, video, tmp_path, capsys, monkeypatch):
    broker = Mosquitto(tmp_path, users={"cam": PASSWORD}).start()
    try:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        monkeypatch.setenv("EDGEPIPE_MQTT_PASSWORD", PASSWORD)
        code = main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv(
            "--source", str(video), "--mqtt", f"mqtt://cam@127.0.0.1:{broker.port}/cams/porch",
            "--serve", "0.0.0.0:18089", "--serve-token-file", str(token_file), "--roi", "left=0,0,0.5,1",
            "--json")])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out)["health"]["healthy"]

        env_file = prefix / "service.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert env_file.read_text() == f"EDGEPIPE_MQTT_PASSWORD={PASSWORD}\nEDGEPIPE_SERVE_TOKEN={TOKEN}\n"
        argv = json.loads((prefix / "service.argv.json").read_text())["argv"]
        assert argv[argv.index("--mqtt") + 1] == f"mqtt://cam@127.0.0.1:{broker.port}/cams/porch"
        assert argv[argv.index("--serve") + 1] == "0.0.0.0:18089"
        assert argv[argv.index("--roi") + 1] == "left=0,0,0.5,1"
        assert not list(prefix.glob(".service.env*"))  # the upload was moved into place

        # The service got both secrets from the file: it logged in to the broker and asked for the token.
        reader = Subscriber(broker.port, ["cams/porch/state", "cams/porch/left/state"], "cam", PASSWORD)
        reader.wait_for(lambda ms: {m.topic for m in ms} == {"cams/porch/state", "cams/porch/left/state"})
        reader.close()
        log = (prefix / "service.log").read_text()
        assert "serving http://0.0.0.0:18089/ (token required)" in log

        assert main(["deploy", "status", sshd.host, *deploy_argv()]) == 0
        status, status_err = capsys.readouterr()
        assert "web page   http://127.0.0.1:18089/" in status
        # Shown through the project's redaction: a user name without a password may be a token, so it goes too.
        assert f"mqtt       mqtt://***@127.0.0.1:{broker.port}/cams/porch (state: cams/porch/state)" in status
        everything = out + err + status + status_err + log + (prefix / "service.json").read_text() \
            + (prefix / "deploy-state.json").read_text() + json.dumps(argv)
        assert PASSWORD not in everything and TOKEN not in everything

        # Deployed again without secrets: the old file goes, so no stale secret lingers.
        monkeypatch.delenv("EDGEPIPE_MQTT_PASSWORD")
        assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", str(video))]) == 0
        assert not env_file.exists()
    finally:
        broker.stop()


def test_serve_on_a_public_address_needs_a_token_or_serve_public_which_reaches_the_service(
        tiny_bundle, sshd, deploy_argv, prefix, video, capsys, monkeypatch):
    monkeypatch.delenv("EDGEPIPE_SERVE_TOKEN", raising=False)
    argv = ["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", str(video), "--serve", "0.0.0.0:18090")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "without a token would show the camera" in err and "--serve-public" in err and len(err.splitlines()) == 1
    assert not (prefix / "service.argv.json").exists()

    assert main([*argv, "--serve-public", "--json"]) == 0
    capsys.readouterr()
    service = json.loads((prefix / "service.argv.json").read_text())["argv"]
    assert service[service.index("--serve") + 1] == "0.0.0.0:18090" and "--serve-public" in service
    assert "serving http://0.0.0.0:18090/ to anyone (--serve-public)" in (prefix / "service.log").read_text()


def test_serve_public_without_serve_is_a_usage_error(tiny_bundle, sshd, deploy_argv, cli):
    code, _, err = cli("deploy", str(tiny_bundle), sshd.host, *deploy_argv("--serve-public"))
    assert code == 2 and "edgepipe deploy: error: --serve-public needs --serve" in err
