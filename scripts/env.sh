# Source me: environment for running QGIS (qgis_process, pytest-qgis) with the
# project venv and the checkout loaded as plugin "topt", whatever the clone
# folder is called (.qgis-plugins/topt is a link to the checkout).
TOPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export PROJ_DATA="${PROJ_DATA:-/usr/share/proj}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
# QGIS 3.22 calls the deprecated PyQt5.sip.setapi() at start-up; its warning is noise on every run
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:setapi() is deprecated:DeprecationWarning}"
if [ -n "${TOPT_PLUGIN_SOURCE:-}" ]; then
  # load the plugin from another folder (e.g. an unpacked release zip) instead of the checkout
  export QGIS_PLUGINPATH="$TOPT_PLUGIN_SOURCE"
else
  mkdir -p "$TOPT_ROOT/.qgis-plugins"
  [ -L "$TOPT_ROOT/.qgis-plugins/topt" ] || ln -sfn "$TOPT_ROOT" "$TOPT_ROOT/.qgis-plugins/topt"
  case ":${QGIS_PLUGINPATH:-}:" in *":$TOPT_ROOT/.qgis-plugins:"*) ;;
    *) export QGIS_PLUGINPATH="$TOPT_ROOT/.qgis-plugins${QGIS_PLUGINPATH:+:$QGIS_PLUGINPATH}";; esac
fi
if [ -x "$TOPT_ROOT/.venv/bin/python" ] && [ -z "${TOPT_NO_VENV:-}" ]; then
  _site=$("$TOPT_ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  case ":${PYTHONPATH:-}:" in *":$_site:"*) ;; *) export PYTHONPATH="$_site${PYTHONPATH:+:$PYTHONPATH}";; esac
fi
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/xdg-$(id -u)"; mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
fi
