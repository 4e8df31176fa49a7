"""The docker-stacks image stand-in (start.sh, its hooks, the real sudo) on the sandbox kubelet.

What is checked is what the real image does (images/docker-stacks-foundation: start.sh,
Dockerfile, 10activate-conda-env.sh); needs root and Debian's sudo.
"""

from __future__ import annotations

import sys

import pytest

from .pods import Cluster, identity_init, needs_sudo, notebook, sh

pytestmark = pytest.mark.sandbox


@pytest.fixture(autouse=True)
def _sudo() -> None:
    needs_sudo()


async def test_docker_stacks_stand_in_switches_to_nb_uid_from_a_hook(cluster: Cluster) -> None:
    export = "export NB_USER=qiang.guo03 NB_UID=1500 NB_GID=1600 NB_GROUP=qguo"
    await cluster.create(
        "stacks",
        [notebook(["sh", "-c", "id; echo HOME=$HOME; grep CapEff /proc/self/status"])],
        init=identity_init(f"echo '{export}' > /nfsuid/run/nfsuid-identity.sh"),
        volumes=[{"name": "run", "emptyDir": {}}],
    )
    pod = await cluster.finished("stacks")
    out = cluster.log("stacks", "notebook")
    assert pod["status"]["phase"] == "Succeeded", out
    assert "uid=1500(qiang.guo03) gid=1600(qguo) groups=1600(qguo),100(users)" in out
    assert "HOME=/home/qiang.guo03" in out and "CapEff:\t0000000000000000" in out


async def test_docker_stacks_stand_in_fails_on_a_colliding_nb_uid(cluster: Cluster) -> None:
    await cluster.create(
        "collide", [notebook(["true"])],
        init=identity_init("echo 'export NB_USER=bob NB_UID=65534 NB_GID=1600' > /nfsuid/run/nfsuid-identity.sh"),
        volumes=[{"name": "run", "emptyDir": {}}],
    )  # fmt: skip
    pod = await cluster.finished("collide")
    assert pod["status"]["phase"] == "Failed"
    assert "not unique" in cluster.log("collide", "notebook")


async def test_jupyterhub_singleuser_runs_through_the_stand_in(cluster: Cluster) -> None:
    await cluster.create("singleuser", [notebook(["start-singleuser.py", "--help"], hook=False)])
    pod = await cluster.finished("singleuser")
    out = cluster.log("singleuser", "notebook")
    assert pod["status"]["phase"] == "Succeeded", out
    assert "Running as jovyan: start-singleuser.py --help" in out
    assert "set log level to logging.DEBUG" in out  # jupyterhub-singleuser's own help


async def test_sudo_switches_to_the_user_and_stays_on_as_the_root_parent(cluster: Cluster) -> None:
    script = "id -un; cat /proc/$PPID/comm; grep ^Uid: /proc/$PPID/status"
    await cluster.create("parent", [notebook(["sh", "-c", script], hook=False)])
    pod = await cluster.finished("parent")
    out = cluster.log("parent", "notebook")

    assert pod["status"]["phase"] == "Succeeded", out
    assert out.splitlines()[-3:] == ["jovyan", "sudo", "Uid:\t0\t0\t0\t0"]


async def test_the_environment_reaches_the_lab_through_sudo(cluster: Cluster) -> None:
    env = [{"name": "PYTHONPATH", "value": "/opt/extra"}, {"name": "PERL5LIB", "value": "/x"}]
    script = "echo SUDO_USER=$SUDO_USER HOME=$HOME PYTHONPATH=$PYTHONPATH PERL5LIB=$PERL5LIB"
    await cluster.create("env", [notebook(["sh", "-c", script], hook=False, env=env)])
    await cluster.finished("env")

    # --preserve-env keeps all but sudo's env_delete list; start.sh passes PYTHONPATH again.
    assert (
        "SUDO_USER=root HOME=/home/jovyan PYTHONPATH=/opt/extra PERL5LIB="
        in cluster.log("env", "notebook").splitlines()
    )


async def test_start_sh_already_executed_runs_its_command_at_once_as_root(
    cluster: Cluster,
) -> None:
    env = [{"name": "_START_SH_EXECUTED", "value": "1"}]
    await cluster.create(
        "again", [notebook(["sh", "-c", "echo uid=$(id -u)"], hook=False, env=env)]
    )
    await cluster.finished("again")
    out = cluster.log("again", "notebook")

    assert "start.sh is the default ENTRYPOINT, do not include it in CMD" in out
    assert "uid=0" in out.splitlines() and "Running hooks" not in out


async def test_conda_hook_runs_python_as_root_with_the_images_home(cluster: Cluster) -> None:
    """Whatever can write under /home/jovyan (here uid 1000) gets code run as root."""
    site = "/home/jovyan/.local/lib/python{}.{}/site-packages".format(*sys.version_info)
    pth = "import os; open('/tmp/pth-ran-as', 'w').write(str(os.getuid()))"
    home = [{"name": "home", "mountPath": "/home"}]
    await cluster.create(
        "conda",
        [notebook(["cat", "/tmp/pth-ran-as"], hook=False, volumeMounts=home)],
        init=[sh(f"mkdir -p {site} && echo \"{pth}\" > {site}/user.pth", name="writer",
                 securityContext={"runAsUser": 1000}, volumeMounts=home)],
        volumes=[{"name": "home", "emptyDir": {}}],
    )  # fmt: skip
    pod = await cluster.finished("conda")
    out = cluster.log("conda", "notebook")

    assert pod["status"]["phase"] == "Succeeded", out
    assert out.splitlines()[-1] == "0"
