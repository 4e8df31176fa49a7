# The image's before-notebook.d hook (sourced by start.sh): start conda, which is Python, to get
# the shell code that activates the base environment. start.sh sources it as root, before the
# switch to NB_USER, with the image's HOME (/home/jovyan) unless the pod sets HOME.
eval "$(conda shell.bash hook)"
