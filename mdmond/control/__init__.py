"""The control socket mdadm talks to: ``/run/mdadm/<container>.sock``, mdmon's wire protocol."""
