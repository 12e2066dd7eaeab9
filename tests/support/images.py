"""Container images for the real test node, built without Docker and without a registry.

Every image is built with buildah (daemonless, from Debian; its `bud` reads the Dockerfile as it is,
BuildKit's secret mounts included) into a private storage under ``.cache/images/``, exported as a
docker-archive tarball and imported into the node's containerd. The base image is a Debian root
filesystem made by debootstrap from the machine's own Debian source (read from apt's sources), so no
image is pulled from anywhere. Each image is named by a hash of everything it is built from: an
unchanged tree finds its tarball and builds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "images"
SUITE = "bookworm"
# Packages of the base image: python3 with venv, and `python` (the Dockerfile calls it).
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Bump to rebuild every image when the recipe below changes in a way the hashed inputs do not show.
RECIPE = "1"
STANDIN_DIR = REPO / "tests" / "standin"


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the step and shows its output."""


@dataclass(frozen=True)
class Image:
    """A built image: the reference Kubernetes uses and the tarball containerd imports."""

    reference: str
    archive: Path

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def debian_mirror(sources: Iterable[Path] | None = None) -> str:
    """The first Debian archive URI in apt's sources that serves ``SUITE`` (not -security/-updates)."""
    if sources is None:
        folder = Path("/etc/apt/sources.list.d")
        sources = [
            Path("/etc/apt/sources.list"),
            *sorted(folder.glob("*.list")),
            *sorted(folder.glob("*.sources")),
        ]
    for path in sources:
        with contextlib.suppress(OSError):
            text = path.read_text()
            if path.suffix == ".sources":  # deb822 stanzas
                for stanza in text.split("\n\n"):
                    fields = dict(
                        line.split(":", 1)
                        for line in stanza.splitlines()
                        if ":" in line and line[:1].isalpha()
                    )
                    if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                        return fields["URIs"].split()[0]
            else:  # one-line format: deb [options] URI SUITE COMPONENTS
                for line in text.splitlines():
                    words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                    if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                        return words[1]
    raise ImageBuildError(f"no Debian {SUITE} source in apt's sources; the base image needs one")


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:16]


def tree_digest(*paths: Path) -> str:
    """Hash of the files under ``paths`` (names and contents; caches and bytecode left out)."""
    parts: list[bytes] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc" or ".egg-info" in str(file):
                continue
            parts += [str(file.relative_to(REPO)).encode(), file.read_bytes()]
    return _digest(*parts)


class Builder:
    """buildah with a private storage; one builder at a time per checkout (a file lock)."""

    def __init__(self, cache: Path = CACHE) -> None:
        self.cache = cache
        self.storage = cache / "storage"
        self.runroot = cache / "run"

    @contextlib.contextmanager
    def locked(self) -> Iterator[Builder]:
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self

    def buildah(self, *args: str, what: str, capture: bool = False, check: bool = True) -> str:
        command = [
            "buildah",
            f"--root={self.storage}",
            f"--runroot={self.runroot}",
            "--storage-driver=overlay",
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ImageBuildError(
                f"{what} failed (buildah {args[0]}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result.stdout.strip() if capture else ""

    def has(self, reference: str) -> bool:
        command = [
            "buildah",
            f"--root={self.storage}",
            f"--runroot={self.runroot}",
            "--storage-driver=overlay",
        ]
        return (
            subprocess.run(
                [*command, "inspect", "--type=image", reference], capture_output=True, check=False
            ).returncode
            == 0
        )

    def export(self, reference: str, archive: Path) -> Image:
        """Write the tarball, then drop this image's older builds (tarballs and stored images): the
        cache holds one build per image, not one per change."""
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self.buildah(
            "push", reference, f"docker-archive:{partial}:{reference}", what=f"exporting {reference}"
        )
        partial.rename(archive)
        repository, prefix = reference.rsplit(":", 1)[0], archive.name.rsplit("-", 1)[0] + "-"
        for older in self.cache.glob(f"{prefix}*.tar"):
            if older != archive and len(older.name) == len(archive.name):
                older.unlink()
                tag = older.stem.rsplit("-", 1)[1]
                self.buildah("rmi", f"{repository}:{tag}", what="pruning an older build", check=False)
        return Image(reference, archive)

    def cached(self, name: str, key: str) -> tuple[str, Path]:
        """The reference and tarball path an image of these inputs has."""
        return f"{name}:{key}", self.cache / f"{name.replace('/', '_')}-{key}.tar"

    def ensure_loaded(self, image: Image) -> None:
        """Have ``image`` in the build storage (as a FROM), loading its tarball if the storage lost it."""
        if not self.has(image.reference):
            self.buildah("pull", f"docker-archive:{image.archive}", what=f"loading {image.reference}")

    # -- the images ---------------------------------------------------------------------------

    def base(self) -> Image:
        """Debian ``SUITE`` with python3: the Dockerfile's PYTHON_IMAGE, built by debootstrap."""
        mirror = debian_mirror()
        key = _digest(RECIPE.encode(), mirror.encode(), SUITE.encode(), " ".join(BASE_PACKAGES).encode())
        reference, archive = self.cached("vramgate-test/python", key)
        if archive.exists():
            return Image(reference, archive)
        container = self.buildah("from", "scratch", what="starting the base image", capture=True)
        try:
            mount = self.buildah("mount", container, what="mounting the base image", capture=True)
            debootstrap = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    mount,
                    mirror,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if debootstrap.returncode != 0:
                raise ImageBuildError(
                    f"debootstrap {SUITE} from {mirror} failed:\n{debootstrap.stdout[-3000:]}"
                )
            # Package lists and caches are not part of an image (as in Debian's own images).
            for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
                for entry in Path(mount, leftover).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            self.buildah(
                "config",
                "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env=LANG=C.UTF-8",
                "--cmd=python3",
                f"--label=org.opencontainers.image.description=Debian {SUITE}, python3, from {mirror}",
                container,
                what="configuring the base image",
            )
            self.buildah("commit", "--rm", container, reference, what="committing the base image")
        except BaseException:
            with contextlib.suppress(ImageBuildError):
                self.buildah("rm", container, what="removing the base image container")
            raise
        return self.export(reference, archive)

    def pause(self, binary: Path) -> Image:
        """The pod sandbox image: the static pause program (hack/controlplane/pause) alone."""
        reference, archive = self.cached("vramgate-test/pause", _digest(RECIPE.encode(), binary.read_bytes()))
        if archive.exists():
            return Image(reference, archive)
        container = self.buildah("from", "scratch", what="starting the pause image", capture=True)
        self.buildah("copy", container, str(binary), "/pause", what="copying pause")
        self.buildah("config", '--entrypoint=["/pause"]', container, what="configuring pause")
        self.buildah("commit", "--rm", container, reference, what="committing pause")
        return self.export(reference, archive)

    def dockerfile(
        self, name: str, context: Path, inputs: Iterable[Path], base: Image, **labels: str
    ) -> Image:
        """``docker build`` of ``context`` with PYTHON_IMAGE=``base``, the machine's pip configuration
        passed as a build secret (and the files it names mounted read-only), never stored in a layer."""
        inputs = list(inputs)
        key = _digest(RECIPE.encode(), base.reference.encode(), tree_digest(*inputs).encode())
        reference, archive = self.cached(name, key)
        if archive.exists():
            return Image(reference, archive)
        self.ensure_loaded(base)
        with tempfile.TemporaryDirectory(prefix="vramgate-pip-") as scratch:
            pip_conf, mounts = _pip_configuration(Path(scratch))
            self.buildah(
                "bud",
                "--isolation=chroot",
                "--pull-never",
                "--layers=false",
                f"--build-arg=PYTHON_IMAGE={base.reference}",
                *(f"--build-arg={key.upper()}={value}" for key, value in labels.items()),
                f"--secret=id=pip.conf,src={pip_conf}",
                *(f"--volume={path}:{path}:ro" for path in mounts),
                f"--tag={reference}",
                str(context),
                what=f"building {name} from {context}",
            )
        return self.export(reference, archive)


def _pip_configuration(folder: Path) -> tuple[Path, list[str]]:
    """The machine's effective pip settings (files and PIP_* variables, as `pip config list` merges
    them) as one pip.conf, and the local paths it names (certificate, wheel folders) to mount."""
    listed = subprocess.run(
        [os.environ.get("PYTHON", "python3"), "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        scope_key, _, value = line.partition("=")
        key = scope_key.rsplit(".", 1)[-1]
        if key and value:
            settings[key] = value.strip().strip("'\"")
    mounts = [
        path
        for key in ("cert", "client-cert", "find-links")
        for path in settings.get(key, "").split()
        if path.startswith("/") and Path(path).exists()
    ]
    pip_conf = folder / "pip.conf"
    pip_conf.write_text(
        "[global]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(settings.items()))
    )
    return pip_conf, mounts


def image_source() -> str:
    """Where the source lives, for the image's OCI label: the checkout's origin, if it has one."""
    result = subprocess.run(
        ["git", "-C", str(REPO), "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def image_revision() -> str:
    """The last commit that changed what goes into the operator image (stable while its inputs are)."""
    result = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "log",
            "-1",
            "--format=%H",
            "--",
            "Dockerfile",
            "pyproject.toml",
            "operator",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


@dataclass(frozen=True)
class NodeImages:
    pause: Image
    operator: Image
    standin: Image

    def all(self) -> tuple[Image, ...]:
        return (self.pause, self.operator, self.standin)


def build_node_images(pause_binary: Path, version: str) -> NodeImages:
    """Every image the in-cluster tests run, built (or found in the cache)."""
    if platform.system() != "Linux" or shutil.which("buildah") is None:
        raise ImageBuildError("building images needs Linux and buildah")
    with Builder().locked() as builder:
        base = builder.base()
        return NodeImages(
            pause=builder.pause(pause_binary),
            operator=builder.dockerfile(
                "vramgate",
                REPO,
                [REPO / "Dockerfile", REPO / ".dockerignore", REPO / "pyproject.toml", REPO / "operator"],
                base,
                version=version,
                revision=image_revision(),
                source=image_source(),
            ),
            standin=builder.dockerfile("vramgate-test/standin", STANDIN_DIR, [STANDIN_DIR], base),
        )
