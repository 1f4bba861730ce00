"""The worker's deployment settings (worker/deployment.py): the build is the package version unless the
pipeline names it, and bad settings are refused naming the variable; pure."""

from __future__ import annotations

import pytest

from worker.deployment import DeploymentSettings, DeploymentSettingsError, MakeCurrent, package_version

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_the_build_is_the_package_version_unless_the_pipeline_names_it():
    assert DeploymentSettings.from_env("rolling-upgrades", {}) == DeploymentSettings(
        "rolling-upgrades", package_version(), MakeCurrent.IF_NONE
    )
    assert package_version() != "0.0.0-dev"  # the installed package's version
    env = {
        "UPGRADE_DEPLOYMENT_NAME": "upgrades",
        "UPGRADE_BUILD_ID": "abc123",
        "UPGRADE_MAKE_CURRENT": "never",
    }
    assert DeploymentSettings.from_env("rolling-upgrades", env) == DeploymentSettings(
        "upgrades", "abc123", MakeCurrent.NEVER
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"UPGRADE_MAKE_CURRENT": "yes"},
            "UPGRADE_MAKE_CURRENT must be one of if-none, always, never (got 'yes')",
        ),
        ({"UPGRADE_DEPLOYMENT_NAME": "a.b"}, "UPGRADE_DEPLOYMENT_NAME must be a name without '.' (got 'a.b'"),
    ],
)
def test_bad_deployment_settings_are_refused_naming_the_variable(env, message):
    with pytest.raises(DeploymentSettingsError) as caught:
        DeploymentSettings.from_env("rolling-upgrades", env)
    assert str(caught.value).startswith(message)
