#!/usr/bin/env python3
"""The container image without a Docker engine: checks the Dockerfile against what it builds on.

  check_image.py <source dir> <the chain-gateway binary>

- Its build stage installs with `scripts/install-deps.sh --build`, which names none of the tests'
  tools, and builds without the tests.
- Its runtime stage installs a package for each shared library the binary needs (`ldd`, mapped
  to packages with `dpkg -S`), but for those debian:12-slim has already (the required ones and
  what apt needs).
- A numeric user, a volume for the journal, a HEALTHCHECK that runs the binary's own probe, OCI
  labels, and the default configuration it copies, valid (`--check-config`) with the environment
  it documents.
- `.dockerignore` keeps the build folders, the history and the npm tools out of the context.
Exits 1 with what is wrong.
"""
import os
import re
import subprocess
import sys

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def run(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, env=env)


def stages(dockerfile):
    """The Dockerfile's instructions (continuation lines joined), per stage."""
    text = re.sub(r"\\\n", " ", dockerfile)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            out.append([])
        out[-1].append((word, rest.strip()))
    return out


def depends(packages):
    """`packages` and everything they depend on, as installed here."""
    seen = set()
    todo = list(packages)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = run("dpkg-query", "-W", "-f=${Pre-Depends}, ${Depends}", p)
        for alternative in r.stdout.split(","):
            name = alternative.strip().split("|")[0].strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen


def main():
    source, binary = sys.argv[1], sys.argv[2]
    with open(os.path.join(source, "Dockerfile")) as f:
        build, runtime = stages(f.read())

    # The build stage: the build-only install, no tests.
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    check("scripts/install-deps.sh --build" in build_runs,
          "the build stage does not run scripts/install-deps.sh --build")
    check("-DGATEWAY_BUILD_TESTS=OFF" in build_runs, "the build stage builds the tests")
    listed = run(os.path.join(source, "scripts/install-deps.sh"), "--build", "--print")
    check(listed.returncode == 0, "install-deps.sh --build --print failed: " + listed.stderr)
    build_packages = set(listed.stdout.split())
    everything = set(run(os.path.join(source, "scripts/install-deps.sh"), "--print").stdout.split())
    for tool in ["googletest", "libgtest-dev", "libgmock-dev", "libbenchmark-dev", "wrk", "clang",
                 "libclang-rt-14-dev", "chromium", "nodejs", "npm", "python3", "prometheus"]:
        check(tool not in build_packages, f"install-deps.sh --build installs the tests' {tool}")
    check({"googletest", "chromium", "clang"} <= everything,
          "install-deps.sh without --build lost the tests' tools")
    check(build_packages < everything, "--build is not a part of the whole install")

    # The runtime stage: every library the binary loads comes from a package it installs.
    runtime_runs = " ".join(rest for word, rest in runtime if word == "RUN")
    m = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", runtime_runs)
    check(m is not None, "the runtime stage installs no packages")
    installed = set(m.group(1).split()) if m else set()
    required = run("dpkg-query", "-W", "-f=${Package} ${Priority}\n").stdout.split("\n")
    base = depends([line.split()[0] for line in required if line.endswith(" required")] + ["apt"])
    available = depends(installed) | base
    libraries = run("ldd", binary).stdout
    check("not found" not in libraries, "the binary has a library not found:\n" + libraries)
    for path in re.findall(r"=> (/\S+)", libraries):
        owner = None
        for candidate in [path, "/usr" + path, os.path.realpath(path)]:
            r = run("dpkg", "-S", candidate)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        check(owner is not None, f"no package owns {path}")
        if owner:
            check(owner in available,
                  f"{path} is {owner}'s, which the runtime stage does not install")

    # The rest of the runtime stage.
    words = dict()
    for word, rest in runtime:
        words.setdefault(word, []).append(rest)
    user = words.get("USER", [""])[-1]
    check(re.fullmatch(r"\d+(:\d+)?", user) is not None and not user.startswith("0"),
          f"USER is '{user}', not a numeric non-root user (runAsNonRoot cannot verify a name)")
    check(any("--uid " + user.split(":")[0] in r for r in words.get("RUN", [])),
          "the numeric USER is not created with that uid")
    check(any("/var/lib/chain-gateway" in v for v in words.get("VOLUME", [])),
          "no VOLUME for the journal at /var/lib/chain-gateway")
    health = " ".join(words.get("HEALTHCHECK", []))
    check("chain-gateway" in health and "--probe" in health,
          "the HEALTHCHECK does not run the binary's own --probe (the image has no curl)")
    labels = " ".join(words.get("LABEL", []))
    for label in ["title", "version", "description"]:
        check(f"org.opencontainers.image.{label}=" in labels, f"no OCI label image.{label}")
    # The command and the HEALTHCHECK read the file GATEWAY_CONFIG names, which the image has.
    env = dict(e.split("=", 1) for r in words.get("ENV", []) for e in r.split() if "=" in e)
    target = env.get("GATEWAY_CONFIG", "")
    check(target, "no ENV GATEWAY_CONFIG: the command and the HEALTHCHECK would read different files")
    check("--config" not in " ".join(words.get("CMD", []) + words.get("ENTRYPOINT", [])),
          "the command names a --config of its own, which the HEALTHCHECK would not read")
    copies = [r.split() for r in words.get("COPY", []) if not r.startswith("--from")]
    config = [c for c in copies if c[-1] == target]
    check(len(config) == 1, f"no default configuration copied to GATEWAY_CONFIG ({target})")
    # The binary copied from where the build stage built it.
    from_build = [r.split() for r in words.get("COPY", []) if r.startswith("--from=build")]
    built = re.search(r"BUILD_DIR=(\S+)", build_runs)
    check(built and any(c[1] == built.group(1) + "/src/chain-gateway" for c in from_build),
          "the runtime stage does not copy the binary from the build stage's BUILD_DIR")
    # Every package the runtime stage names exists (installed here, as the -dev packages pull in).
    for package in sorted(installed):
        check(run("dpkg-query", "-W", package).returncode == 0,
              f"the runtime stage installs {package}, which is not a package here")
    if config:
        env = dict(os.environ, UPSTREAM_URL="http://10.0.0.5:8545",
                   GATEWAY_ADMIN_TOKEN="an-admin-token-of-the-pod")
        r = run(binary, "--check-config", os.path.join(source, config[0][0]), env=env)
        check(r.returncode == 0, "the default configuration is not valid: " + r.stdout + r.stderr)

    # The build context.
    with open(os.path.join(source, ".dockerignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    for must in ["build", "build-*", ".git", "tools/node_modules"]:
        check(must in ignored, f".dockerignore does not leave out {must}")
    for kept in ["src", "include", "scripts", "config", "CMakeLists.txt"]:
        check(kept not in ignored, f".dockerignore leaves out {kept}, which the build needs")

    if problems:
        print("check_image: " + str(len(problems)) + " problem(s):")
        for p in problems:
            print("  - " + p)
        return 1
    print("check_image: the Dockerfile matches the scripts, the binary's libraries and the default "
          "configuration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
