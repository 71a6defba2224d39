# NixOS module for dockwatch: services.dockwatch.
#
# It replaces the old `services.aiWorkerAccess` docker wrapper script. The supervised users keep
# `docker ps/build/run/compose up`; the kernel kills blocked docker commands before they run.
#
# Access modes (DESIGN.md §1.9):
#   setgid (default) - the supervised users are NOT in the docker group. The docker CLI is
#     installed setgid-docker as /run/wrappers/bin/docker, so plain Unix permissions keep curl,
#     copies and scripts off the socket, and the CLI runs non-dumpable and in secure-exec.
#   group - the users stay in the docker group; the BPF connect gate is the only barrier.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge types optional optionals concatMap
    concatStringsSep elem filter listToAttrs nameValuePair literalExpression any;

  cfg = config.services.dockwatch;
  settingsFormat = pkgs.formats.toml { };

  # The exec chain of a docker command in setgid mode, and what the daemon trusts at each step:
  #   /run/wrappers/bin/docker   the setgid copy NixOS makes of its wrapper program at every
  #                              activation (a new inode each time). It only gives the docker
  #                              group and execs its source: a *helper* that is a setgid launcher.
  #   ${docker}/bin/docker        nixpkgs' binary wrapper (sets PATH and DOCKER_CLI_PLUGIN_DIRS)
  #   ${docker}/libexec/docker/docker   the real CLI, the process that connects to the socket
  # The last two are trusted *clients*: each exec's argv (the user's, passed through) is
  # classified, so the process that connects carries its own ALLOW verdict, which the connect
  # gate (and the LSM gate in lsm mode) requires. The daemon accepts clients without the setgid
  # bit because a setgid launcher of the socket's group is among the helpers.
  # Because the wrapper's inode changes on every activation, the wrappers service reloads
  # dockwatch after it has rebuilt them (see systemd.services.suid-sgid-wrappers below).
  wrapperPath = "${config.security.wrapperDir}/docker";
  cliChain = [ "${cfg.dockerPackage}/bin/docker" "${cfg.dockerPackage}/libexec/docker/docker" ];
  trustedClients = if cfg.clients != null then cfg.clients else cliChain;
  trustedHelpers = (optionals (cfg.access == "setgid" && cfg.clients == null) [ wrapperPath ]) ++ cfg.helpers;

  settings = {
    supervise = {
      users = cfg.users;
      follow_children = cfg.followChildren;
    };
    docker = {
      sockets = cfg.sockets;
      clients = trustedClients;
      plugin_dirs = cfg.pluginDirs;
      access = cfg.access;
      helpers = trustedHelpers;
    };
    policy = {
      inherit (cfg.policy) mode block escape unknown undecided plugins;
      sensitive_paths = cfg.policy.sensitivePaths;
    };
    events = {
      inherit (cfg.events) socket group history;
    };
    alerts = {
      webhook_url = if cfg.alerts.webhookUrl == null then "" else cfg.alerts.webhookUrl;
      webhook_secret_file = if cfg.alerts.webhookSecretFile == null then "" else toString cfg.alerts.webhookSecretFile;
    };
    metrics.listen = if cfg.metrics.listen == null then "" else cfg.metrics.listen;
    kernel.mode = cfg.kernel.mode;
  };
  configPath = "/etc/dockwatch/dockwatch.toml";
  configFile = settingsFormat.generate "dockwatch.toml" (lib.recursiveUpdate settings cfg.extraConfig);

  # Capabilities, computed once for AmbientCapabilities and CapabilityBoundingSet (as nixpkgs'
  # endlessh-go module does). The daemon runs as root but holds only these.
  capabilities = [
    "CAP_BPF" # create maps, load programs and BTF
    "CAP_PERFMON" # tracing programs (tp_btf, raw_tp, lsm), bpf_send_signal, perf tracepoints
    "CAP_SYS_RESOURCE" # raise RLIMIT_MEMLOCK on kernels that still charge BPF memory to it
    "CAP_NET_ADMIN" # load and attach cgroup/connect_unix (a networking program type)
    "CAP_KILL" # pidfd_send_signal to supervised processes (divergence kills)
    "CAP_DAC_READ_SEARCH" # stat trusted clients and sockets anywhere, read other users' /proc
    "CAP_SYS_PTRACE" # /proc/PID/exe and /proc/PID/environ of other users' processes
    "CAP_CHOWN" # hand the event socket to events.group
  ]
  # CAP_SYS_ADMIN is not in the list: since Linux 5.8 CAP_BPF + CAP_PERFMON cover loading LSM and
  # tracing programs, task storage maps and bpf_send_signal, and CAP_NET_ADMIN covers the cgroup
  # attach. Kernels before 5.8 (unsupported) or site policies that need it use extraCapabilities.
  ++ cfg.extraCapabilities;

  # Login shell that puts the session under `dockwatch sandbox`. sshd, login and `su -` start a
  # login shell with no arguments (the "-name" argv[0] that marks it is lost when the kernel runs
  # a script), so no arguments means a login shell; `ssh host cmd` passes `-c cmd` through.
  sandboxShell = pkgs.writeShellScript "dockwatch-sandbox-shell" ''
    if [ "$#" -eq 0 ]; then set -- -l; fi
    exec ${cfg.package}/bin/dockwatch sandbox --profile ${cfg.sandbox.profile} -- ${cfg.sandbox.shell} "$@"
  '';

  isRoot = u: u == "root" || u == "0";
  userDecl = u: config.users.users.${u} or { };
  inSocketGroup = u:
    elem cfg.socketGroup ((userDecl u).extraGroups or [ ])
    || (userDecl u).group or null == cfg.socketGroup
    || elem u ((config.users.groups.${cfg.socketGroup} or { }).members or [ ]);
  isNumeric = u: builtins.match "[0-9]+" u != null;
in
{
  options.services.dockwatch = {
    enable = mkEnableOption "dockwatch, the kernel-enforced docker command policy for untrusted local users";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The dockwatch package.";
    };

    dockerPackage = mkOption {
      type = types.package;
      default = pkgs.docker;
      defaultText = literalExpression "pkgs.docker";
      description = "The docker CLI that is trusted and, with access = \"setgid\", wrapped setgid.";
    };

    users = mkOption {
      type = types.listOf types.str;
      default = [ "ai-worker" ];
      description = "Accounts whose processes are supervised (names or numeric UIDs; not root).";
    };

    followChildren = mkOption {
      type = types.bool;
      default = true;
      description = "Keep supervising descendants through fork, setuid, sudo, su and newgrp.";
    };

    sockets = mkOption {
      type = types.listOf types.str;
      default = [ "/run/docker.sock" ];
      description = "Protected Docker API unix sockets (the /var/run spelling is implied).";
    };

    socketGroup = mkOption {
      type = types.str;
      default = "docker";
      description = "Group that owns the Docker socket; the setgid wrapper is installed with it.";
    };

    clients = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = ''
        Trusted docker CLI binaries (identified by device and inode; their argv is classified).
        null means dockerPackage's bin/docker and libexec/docker/docker. With setgid access the
        setgid wrapper in security.wrapperDir is added to the helpers: it gives the docker group
        and execs bin/docker.
      '';
    };

    pluginDirs = mkOption {
      type = types.listOf types.str;
      default = [ "${pkgs.docker-compose}/libexec/docker/cli-plugins" ];
      defaultText = literalExpression ''[ "''${pkgs.docker-compose}/libexec/docker/cli-plugins" ]'';
      description = "Directories holding the trusted compose and buildx plugins.";
    };

    access = mkOption {
      type = types.enum [ "group" "setgid" ];
      default = "setgid";
      description = ''
        How supervised users reach the Docker socket. "setgid": they are not in socketGroup and
        use a setgid-docker CLI wrapper (recommended). "group": they are members of socketGroup.
      '';
    };

    helpers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Other binaries a setgid client may exec (credential helpers, ssh).";
    };

    extraCapabilities = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "CAP_SYS_ADMIN" ];
      description = "Capabilities added to the service's ambient and bounding sets.";
    };

    policy = {
      mode = mkOption {
        type = types.enum [ "enforce" "audit" ];
        default = "enforce";
        description = "enforce kills blocked commands; audit only reports them.";
      };
      block = mkOption {
        type = types.listOf types.str;
        default = [ "exec" "cp" "commit" "diff" "export" "import" "load" "save" "attach" "push" "tag" ];
        description = "Operations blocked in every spelling, or command paths such as \"system prune\".";
      };
      escape = mkOption {
        type = types.enum [ "block" "audit" "off" ];
        default = "block";
        description = "Container-escape flags (--privileged, sensitive binds, host namespaces, ...).";
      };
      unknown = mkOption {
        type = types.enum [ "block" "audit" ];
        default = "block";
        description = "Commands and plugins the grammar does not know.";
      };
      undecided = mkOption {
        type = types.enum [ "block" "allow" ];
        default = "block";
        description = "Argv too long for the in-kernel classifier.";
      };
      sensitivePaths = mkOption {
        type = types.listOf types.str;
        default = [ "/etc" "/root" "/home" "/proc" "/sys" "/dev" "/boot" "/nix" "/var/lib/docker"
          "/run/docker.sock" "/var/run/docker.sock" ];
        description = "Host paths a bind mount may not be, lie under, or contain.";
      };
      plugins = mkOption {
        type = types.listOf (types.enum [ "compose" "buildx" ]);
        default = [ "compose" "buildx" ];
        description = "Trusted CLI plugins whose grammar is known.";
      };
    };

    events = {
      socket = mkOption {
        type = types.str;
        default = "/run/dockwatch/events.sock";
        description = "Unix socket of the event stream.";
      };
      group = mkOption {
        type = types.str;
        default = "dockwatch";
        description = "Group (besides root) that may read the event stream; created by the module.";
      };
      history = mkOption {
        type = types.int;
        default = 10000;
        description = "Events kept in memory for `dockwatch events`.";
      };
    };

    alerts = {
      webhookUrl = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Webhook for block alerts (JSON, Slack-compatible).";
      };
      webhookSecretFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "File with the webhook's HMAC secret (kept out of the Nix store).";
      };
    };

    metrics.listen = mkOption {
      type = types.nullOr types.str;
      default = "127.0.0.1:9477";
      description = "host:port of the Prometheus endpoint; null disables it.";
    };

    sandbox = {
      enable = mkEnableOption "`dockwatch sandbox` (seccomp) around the supervised users' login shells";
      profile = mkOption {
        type = types.enum [ "agent" ];
        default = "agent";
        description = "Seccomp profile for the sessions.";
      };
      shell = mkOption {
        type = types.path;
        default = "${pkgs.bashInteractive}/bin/bash";
        defaultText = literalExpression ''"''${pkgs.bashInteractive}/bin/bash"'';
        description = "The real shell started inside the sandbox.";
      };
    };

    kernel.mode = mkOption {
      type = types.enum [ "auto" "lsm" "tracepoint" ];
      default = "auto";
      description = ''
        Enforcement mode. auto uses lsm mode where the BPF LSM is active and its programs load
        (race-free connect gate, ptrace guard), else the tracepoint/cgroup fallback; lsm refuses
        to start without the BPF LSM; tracepoint never uses it. `dockwatch status` says which
        mode runs and why.
      '';
    };

    bpfLsm = mkOption {
      type = types.bool;
      default = true;
      description = "Add bpf to the kernel's lsm= list so dockwatch runs in lsm mode.";
    };

    extraConfig = mkOption {
      type = settingsFormat.type;
      default = { };
      example = { alerts.dedup_window = "10m"; };
      description = "Extra TOML settings merged over the generated configuration.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = cfg.users != [ ];
          message = "services.dockwatch.users is empty: list the accounts to supervise, for example [ \"ai-worker\" ].";
        }
        {
          assertion = !(any isRoot cfg.users);
          message = "services.dockwatch.users must not contain root: dockwatch cannot supervise root.";
        }
        {
          assertion = cfg.sockets != [ ];
          message = "services.dockwatch.sockets is empty: list the Docker sockets to protect.";
        }
        {
          assertion = cfg.clients == null || cfg.clients != [ ];
          message = "services.dockwatch.clients is empty: set it to null to trust the docker CLI of dockerPackage.";
        }
        {
          assertion = cfg.alerts.webhookSecretFile == null || cfg.alerts.webhookUrl != null;
          message = "services.dockwatch.alerts.webhookSecretFile is set but alerts.webhookUrl is not.";
        }
        {
          assertion = cfg.events.group != "";
          message = "services.dockwatch.events.group must not be empty.";
        }
      ]
      ++ map
        (u: {
          assertion = !(inSocketGroup u);
          message = "services.dockwatch: access = \"setgid\" but supervised user ${u} is in the ${cfg.socketGroup} group "
            + "(users.users.${u}.extraGroups or users.groups.${cfg.socketGroup}.members). Remove it from the group "
            + "(the setgid wrapper gives it docker access), or set services.dockwatch.access = \"group\".";
        })
        (optionals (cfg.access == "setgid") cfg.users)
      ++ optional cfg.sandbox.enable {
        # An unprivileged process can only install a seccomp filter after setting no_new_privs,
        # and no_new_privs makes exec ignore set-group-ID bits: under the sandbox the setgid
        # docker wrapper would run without the docker group and every docker command would fail.
        # setgid access does not need the sandbox for the socket: the kernel's permission check
        # and the non-dumpable client already stop what the filter would (io_uring, namespaces,
        # ptrace, pidfd_getfd).
        assertion = cfg.access == "group";
        message = "services.dockwatch.sandbox.enable needs services.dockwatch.access = \"group\": the sandbox sets "
          + "no_new_privs, which disables the setgid docker wrapper of access = \"setgid\" (and setgid access "
          + "already keeps io_uring, user namespaces and ptrace away from the socket).";
      }
      ++ map
        (u: {
          assertion = !(isNumeric u) && ((userDecl u).isNormalUser or false || (userDecl u).isSystemUser or false);
          message = "services.dockwatch.sandbox.enable wraps the login shell of users.users.${u}, "
            + "but ${u} is not declared there (isNormalUser or isSystemUser); numeric UIDs cannot be wrapped.";
        })
        (optionals cfg.sandbox.enable cfg.users);

      warnings = optional (cfg.access == "group")
        ("services.dockwatch.access = \"group\": the supervised users stay in the ${cfg.socketGroup} group and "
          + "the BPF connect gate is the only barrier; without the BPF LSM it is path based. "
          + "access = \"setgid\" is recommended.")
      ++ optional (cfg.kernel.mode == "lsm" && !cfg.bpfLsm)
        ("services.dockwatch.kernel.mode = \"lsm\" with bpfLsm = false: dockwatch refuses to start unless "
          + "the kernel's built-in LSM list (CONFIG_LSM) has bpf.");

      environment.etc."dockwatch/dockwatch.toml".source = configFile;
      environment.systemPackages = [ cfg.package ];

      users.groups.${cfg.events.group} = { };

      boot.kernelParams = optional cfg.bpfLsm "lsm=landlock,lockdown,yama,integrity,apparmor,bpf";

      fileSystems."/sys/fs/bpf" = {
        device = "bpffs";
        fsType = "bpf";
        options = [ "rw" "nosuid" "nodev" "noexec" "relatime" "mode=700" ];
      };

      systemd.services.dockwatch = {
        description = "dockwatch: kernel-enforced docker policy for untrusted local users";
        wantedBy = [ "multi-user.target" ];
        # Enforce before anyone can log in or reach dockerd.
        before = [ "docker.service" "docker.socket" "systemd-user-sessions.service" ];
        after = [ "sys-fs-bpf.mount" "sys-kernel-tracing.mount" "suid-sgid-wrappers.service" ];
        wants = [ "sys-fs-bpf.mount" ];
        reloadTriggers = [ configFile ];
        serviceConfig = {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = "${cfg.package}/bin/dockwatch run --config ${configPath}";
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
          WatchdogSec = "30s";
          Restart = "on-failure";
          RestartSec = "1s";

          User = "root";
          AmbientCapabilities = capabilities;
          CapabilityBoundingSet = capabilities;
          NoNewPrivileges = true;

          RuntimeDirectory = "dockwatch";
          RuntimeDirectoryMode = "0755"; # events.group must reach the socket inside
          ProtectSystem = "strict";
          ReadWritePaths = [ "/sys/fs/bpf" ];
          ProtectHome = true;
          PrivateTmp = true;
          PrivateNetwork = false; # metrics and webhooks
          ProtectKernelModules = true;
          ProtectClock = true;
          ProtectHostname = true;
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          MemoryDenyWriteExecute = true;
          RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
          SystemCallArchitectures = "native";
          # @system-service plus the two BPF calls; the daemon also installs its own, narrower
          # allowlist (dockwatch sandbox --profile daemon --print) once its programs are attached.
          SystemCallFilter = [ "@system-service" "bpf" "perf_event_open" ];
          SystemCallErrorNumber = "EPERM";
          UMask = "0027";
        };
      };
    }

    (mkIf (cfg.access == "setgid") {
      security.wrappers.docker = {
        owner = "root";
        group = cfg.socketGroup;
        setuid = false;
        setgid = true;
        permissions = "u+rx,g+x,o+x";
        source = "${cfg.dockerPackage}/bin/docker";
      };
      # The wrapper gets a new inode at every activation; make the daemon re-resolve it.
      systemd.services.suid-sgid-wrappers.postStart =
        "${config.systemd.package}/bin/systemctl --no-block try-reload-or-restart dockwatch.service || true";
    })

    (mkIf cfg.sandbox.enable {
      users.users = listToAttrs (map (u: nameValuePair u { shell = sandboxShell; }) cfg.users);
      environment.shells = [ sandboxShell ];
    })
  ]);
}
