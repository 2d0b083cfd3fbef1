# SPDX-License-Identifier: Apache-2.0
# scripts/lib.sh: shared helpers for scripts/test and scripts/demo (sourced, not executed).
#
# relaykit_install_deps: installs every Debian package the build, the tests and the demo need,
#   non-interactively and idempotently: apt-get runs only when dpkg-query reports something
#   missing. Debian's postfix and redis-server packages must not leave system services running
#   (they would hold ports 25/6379 and a system queue); a policy-rc.d forbids starting services
#   during the install, and anything that started anyway is stopped.
# relaykit_build DIR [CMAKE ARGS...]: configures and builds into DIR with warnings as errors.

# Every package the project needs, in one place.
RELAYKIT_PACKAGES=(
  build-essential cmake pkg-config
  libmilter-dev libre2-dev libhiredis-dev libssl-dev libyaml-cpp-dev libicu-dev libdb5.3-dev
  googletest libgtest-dev libgmock-dev libevent-dev libcli11-dev
  postfix redis-server swaks python3 postfwd policyd-rate-limit clang-format
  sasl2-bin libsasl2-modules
  ccache libsystemd-dev lintian debhelper fakeroot dpkg-dev
  opendkim opendkim-tools miltertest python3-dkim redis-sentinel
  clang libclang-rt-14-dev
  prometheus python3-yaml
)

relaykit_log() { printf '==> %s\n' "$*" >&2; }

# Prints the packages of RELAYKIT_PACKAGES that are not installed.
relaykit_missing_packages() {
  local pkg status
  for pkg in "${RELAYKIT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Stops the system services Debian's packages may have started. Our tests run private
# instances on free loopback ports; a system Postfix or Redis would only get in the way.
relaykit_stop_system_services() {
  local svc
  for svc in postfix redis-server redis-sentinel opendkim postfwd policyd-rate-limit; do
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
      systemctl stop "$svc" >/dev/null 2>&1 || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$svc ]]; then
      /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
    fi
  done
  # Without an init system a system Postfix could still have been started by hand.
  if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
  fi
}

relaykit_install_deps() {
  local missing
  mapfile -t missing < <(relaykit_missing_packages)
  if (( ${#missing[@]} == 0 )); then
    relaykit_log "all packages present"
    return 0
  fi
  if (( EUID != 0 )); then
    echo "missing packages (${missing[*]}) and not root: install them or run as root" >&2
    return 1
  fi
  relaykit_log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  # Forbid service starts during the install; remove our policy-rc.d afterwards only if we
  # created it.
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  apt-get update -qq || rc=$?
  if (( rc == 0 )); then
    apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" || rc=$?
  fi
  if (( created_policy )); then
    rm -f /usr/sbin/policy-rc.d
  fi
  relaykit_stop_system_services
  if (( rc != 0 )); then
    echo "apt-get failed ($rc)" >&2
    return "$rc"
  fi
  mapfile -t missing < <(relaykit_missing_packages)
  if (( ${#missing[@]} != 0 )); then
    echo "still missing after install: ${missing[*]}" >&2
    return 1
  fi
}

# relaykit_build BUILD_DIR [extra cmake args...]
relaykit_build() {
  local dir=$1
  shift
  relaykit_log "configuring $dir"
  cmake -S "$RELAYKIT_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRELAYKIT_WERROR=ON "$@"
  relaykit_log "building $dir"
  cmake --build "$dir" -j"$(nproc)"
}
