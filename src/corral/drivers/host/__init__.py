"""The parts the host-process levels (process, venv, sandbox, vm) are made of: output pipes,
process trees, bwrap and its walls, loopbacks, and the Python and Node environments they
prepare. None of them imports a driver."""
