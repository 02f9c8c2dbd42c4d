"""Targets bkprov makes and removes: systemd containers (Docker) and, later, VMs (QEMU)."""
