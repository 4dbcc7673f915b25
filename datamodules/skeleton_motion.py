"""Synthetic skeleton actions on the NTU RGB+D 25-joint body: the motion generator behind
``datamodule=ntu_synthetic`` (:mod:`datamodules.skeleton_synthetic`).

Classes come in twins (see :func:`class_motions`): a random motion driving 2–3 joint angles
(shoulders, elbows, hips, knees, spine, neck) with its own ranges, tempo and phases, and its
mirror, double-tempo or antiphase twin; odd families add a second performer. Angles pass through
forward kinematics on the Kinect v2 joint tree. Each performance varies tempo, amplitude, start
phase, clip length (looped to fill the clip), posture, body size, position and heading, and adds
idle motion on every driven joint; it is then rendered from camera azimuths about the vertical
axis with independent Gaussian joint noise per view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datamodules.ntu_raw import MAX_BODIES, NUM_JOINTS

AZIMUTHS_DEG = (-45.0, 0.0, 45.0)
# Kinect v2 joint tree, 0-based: the parent of each joint (the spine base is the root)
PARENTS = (-1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 6, 11, 10)
# Each joint's offset from its parent (metres) in an upright rest pose facing -z, x towards the
# body's right, y up. Bone lengths: medians over the 103 frames of the shared NTU sample
# S001C001P001R001A001, left and right averaged; the directions are a neutral standing pose.
REST_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],  # 0 spine base
        [0.0, 0.271, 0.0],  # 1 spine middle
        [0.0, 0.067, 0.0],  # 2 neck
        [0.0, 0.133, 0.0],  # 3 head
        [-0.141, -0.02, 0.0],  # 4 left shoulder
        [0.0, -0.224, 0.0],  # 5 left elbow
        [0.0, -0.209, 0.0],  # 6 left wrist
        [0.0, -0.065, 0.0],  # 7 left hand
        [0.141, -0.02, 0.0],  # 8 right shoulder
        [0.0, -0.224, 0.0],  # 9 right elbow
        [0.0, -0.209, 0.0],  # 10 right wrist
        [0.0, -0.065, 0.0],  # 11 right hand
        [-0.063, -0.02, 0.0],  # 12 left hip
        [0.0, -0.324, 0.0],  # 13 left knee
        [0.0, -0.335, 0.0],  # 14 left ankle
        [0.0, -0.03, -0.097],  # 15 left foot
        [0.063, -0.02, 0.0],  # 16 right hip
        [0.0, -0.324, 0.0],  # 17 right knee
        [0.0, -0.335, 0.0],  # 18 right ankle
        [0.0, -0.03, -0.097],  # 19 right foot
        [0.0, 0.202, 0.0],  # 20 spine at the shoulders
        [0.0, -0.048, 0.0],  # 21 left hand tip
        [0.0, -0.058, -0.058],  # 22 left thumb
        [0.0, -0.048, 0.0],  # 23 right hand tip
        [0.0, -0.058, -0.058],  # 24 right thumb
    ]
)
# left/right counterparts: arm, leg, hand tip, thumb
LEFT_JOINTS = (4, 5, 6, 7, 12, 13, 14, 15, 21, 22)
RIGHT_JOINTS = (8, 9, 10, 11, 16, 17, 18, 19, 23, 24)
MIRROR_JOINT = tuple(
    dict(zip(LEFT_JOINTS + RIGHT_JOINTS, RIGHT_JOINTS + LEFT_JOINTS, strict=True)).get(j, j)
    for j in range(NUM_JOINTS)
)
# Driven joint angles: (joint, axis 0/1/2 = x/y/z, lowest, highest) in radians; positive x-axis
# angles swing a limb forward (knees: negative bends back).
LEFT_DRIVERS = (
    (4, 0, -0.5, 2.8),  # shoulder flexion
    (4, 2, -2.6, 0.1),  # shoulder abduction
    (5, 0, 0.0, 2.3),  # elbow flexion
    (12, 0, -0.4, 1.5),  # hip flexion
    (12, 2, -0.8, 0.1),  # hip abduction
    (13, 0, -2.0, 0.0),  # knee flexion
)
CENTRAL_DRIVERS = (
    (1, 0, -1.0, 0.2),  # bow
    (1, 1, -0.8, 0.8),  # twist
    (1, 2, -0.5, 0.5),  # side lean
    (2, 0, -0.6, 0.4),  # nod
    (2, 1, -0.9, 0.9),  # head turn
)
MAX_DRIVERS = 3
TWO_BODY_YAW_DEG = 60.0
TWO_BODY_GAP = 1.0
IDLE_AMPLITUDE = 0.08
POSTURE_STD = 0.15
HEADING_JITTER_DEG = 10.0
POSITION_JITTER = 0.1
MIN_LENGTH_FRACTION = 0.6


def _mirror(driver: tuple[int, int, float, float]) -> tuple[int, int, float, float]:
    """The same angle on the other side: x → −x flips the sign of y- and z-axis angles."""
    joint, axis, low, high = driver
    return (MIRROR_JOINT[joint], axis, -high, -low) if axis else (MIRROR_JOINT[joint], 0, low, high)


DRIVERS = LEFT_DRIVERS + tuple(_mirror(d) for d in LEFT_DRIVERS) + CENTRAL_DRIVERS


def _topological_order() -> list[int]:
    order = [0]
    for joint in order:
        order.extend(child for child, parent in enumerate(PARENTS) if parent == joint)
    return order


FK_ORDER = _topological_order()
DRIVEN_JOINTS = sorted({joint for joint, *_ in DRIVERS})


def rotation_about_vertical(degrees: float) -> np.ndarray:
    """The 3×3 rotation by ``degrees`` about the y (vertical) axis."""
    return _euler_xyz(np.array([0.0, math.radians(degrees), 0.0]))


def rotate_clips(clips: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate clips about the vertical axis.

    Shapes:
        clips (..., 3, T, V, M) → (..., 3, T, V, M)
    """
    return np.einsum("ij,...jtvm->...itvm", rotation_about_vertical(degrees), clips)


def _euler_xyz(angles: np.ndarray) -> np.ndarray:
    """Rz·Ry·Rx of per-axis angles (x first). Shapes: angles (..., 3) → (..., 3, 3)."""
    (ca, cb, cc), (sa, sb, sc) = (
        np.moveaxis(np.cos(angles), -1, 0),
        np.moveaxis(np.sin(angles), -1, 0),
    )
    rows = (
        (cb * cc, sa * sb * cc - ca * sc, ca * sb * cc + sa * sc),
        (cb * sc, sa * sb * sc + ca * cc, ca * sb * sc - sa * cc),
        (-sb, sa * cb, ca * cb),
    )
    return np.stack([np.stack(row, -1) for row in rows], -2)


@dataclass(frozen=True)
class ClassMotions:
    """Per class and body: driver indices into DRIVERS (−1 unused), angle ranges, phases, tempo.

    Shapes: drivers, low, high, phase (K, 2, MAX_DRIVERS); cycles, (K, 2); two_bodies,
    mirrored (K,)
    """

    drivers: np.ndarray
    low: np.ndarray
    high: np.ndarray
    phase: np.ndarray
    cycles: np.ndarray
    two_bodies: np.ndarray
    mirrored: np.ndarray


def class_motions(num_classes: int, rng: np.random.Generator) -> ClassMotions:
    """Draw the classes in pairs: class 2f is a random motion, class 2f + 1 its twin.

    Twins share joints and ranges, so per-joint pose statistics barely tell them apart: family
    f's twin is the left/right mirror (f % 3 == 0), twice the tempo (1) or the first driver in
    antiphase (2). Odd families have a second performer.
    """
    shape = (num_classes, MAX_BODIES, MAX_DRIVERS)
    drivers = np.full(shape, -1)
    low, high, phase = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    cycles = np.ones((num_classes, MAX_BODIES))
    family = np.arange(num_classes) // 2
    two_bodies = family % 2 == 1
    mirrored = (np.arange(num_classes) % 2 == 1) & (family % 3 == 0)
    mirror_index = np.array([DRIVERS.index(_mirror(d)) for d in DRIVERS])
    flips = np.array([axis != 0 for _, axis, _, _ in DRIVERS])
    for k in range(num_classes):
        for body in range(2 if two_bodies[k] else 1):
            if k % 2 == 0:
                count = int(rng.integers(2, MAX_DRIVERS + 1))
                chosen = rng.choice(len(DRIVERS), size=count, replace=False)
                bottom = np.array([DRIVERS[d][2] for d in chosen])
                span = np.array([DRIVERS[d][3] for d in chosen]) - bottom
                width = span * rng.uniform(0.5, 1.0, count)
                start = bottom + rng.uniform(0, 1, count) * (span - width)
                drivers[k, body, :count] = chosen
                low[k, body, :count], high[k, body, :count] = start, start + width
                phase[k, body, :count] = rng.uniform(0, 2 * np.pi, count)
                cycles[k, body] = rng.choice([1.0, 1.5])
                continue
            base = k - 1
            for array in (drivers, low, high, phase, cycles):
                array[k, body] = array[base, body]
            if mirrored[k]:
                used = drivers[base, body] >= 0
                drivers[k, body, used] = mirror_index[drivers[base, body, used]]
                flip = used & flips[drivers[base, body]]
                low[k, body, flip] = -high[base, body, flip]
                high[k, body, flip] = -low[base, body, flip]
            elif family[k] % 3 == 1:
                cycles[k, body] *= 2
            elif body == 0:
                phase[k, body, 0] += np.pi
    return ClassMotions(drivers, low, high, phase, cycles, two_bodies, mirrored)


def _joint_angles(
    motions: ClassMotions, labels: np.ndarray, tau: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-performance joint angles with tempo, amplitude and phase jitter plus idle motion.

    Shapes: labels (N,), tau (N, T) → (N, 2, T, len(DRIVEN_JOINTS), 3)
    """
    n, frames = tau.shape
    drivers = motions.drivers[labels]  # (N, 2, D)
    mid = (motions.low[labels] + motions.high[labels]) / 2
    half = (motions.high[labels] - motions.low[labels]) / 2 * rng.uniform(0.75, 1.25, (n, 2, 1))
    cycles = motions.cycles[labels] * rng.uniform(0.8, 1.25, (n, 2))  # (N, 2)
    phase = motions.phase[labels] + rng.uniform(0, 2 * np.pi, (n, 2, 1))
    phase = phase + rng.normal(0, 0.3, phase.shape)
    arg = 2 * np.pi * cycles[..., None, None] * tau[:, None, None] + phase[..., None]
    value = mid[..., None] - half[..., None] * np.cos(arg)  # (N, 2, D, T)
    slots = np.array([DRIVEN_JOINTS.index(joint) * 3 + axis for joint, axis, _, _ in DRIVERS])
    onehot = np.zeros((n, MAX_BODIES, MAX_DRIVERS, len(DRIVEN_JOINTS) * 3))
    used = drivers >= 0
    onehot[used, slots[drivers[used]]] = 1.0
    angles = np.einsum("nbdt,nbdk->nbtk", value, onehot)
    idle_arg = 2 * np.pi * rng.uniform(0.5, 2.0, (n, 2, len(DRIVERS), 1)) * tau[:, None, None]
    idle = IDLE_AMPLITUDE * np.sin(idle_arg + rng.uniform(0, 2 * np.pi, (n, 2, len(DRIVERS), 1)))
    idle = idle + rng.normal(0, POSTURE_STD, idle.shape[:-1])[..., None]  # a personal posture
    angles[..., slots] += idle.transpose(0, 1, 3, 2)
    return angles.reshape(n, MAX_BODIES, frames, len(DRIVEN_JOINTS), 3)


def _forward_kinematics(angles: np.ndarray, root: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Joint positions from the driven joints' angles, each body's root pose and bone scale.

    Shapes: angles (N, B, T, len(DRIVEN_JOINTS), 3); root (N, B, 4, 3): rows 0–2 the heading
    rotation, row 3 the position; scale (N, B) → positions (N, B, T, 25, 3)
    """
    local = _euler_xyz(angles)  # (N, B, T, R, 3, 3)
    n, b, t = angles.shape[:3]
    offsets = REST_OFFSETS * scale[:, :, None, None]  # (N, B, 25, 3)
    pos = np.zeros((n, b, t, NUM_JOINTS, 3))
    pos[..., 0, :] = root[:, :, None, 3]
    frame = {0: root[:, :, None, :3]}  # joint → its global rotation (N, B, T or 1, 3, 3)
    for joint in FK_ORDER[1:]:
        parent = frame[PARENTS[joint]]
        step = (parent * offsets[:, :, None, None, joint]).sum(-1)  # (N, B, T, 3)
        pos[..., joint, :] = pos[..., PARENTS[joint], :] + step
        driven = DRIVEN_JOINTS.index(joint) if joint in DRIVEN_JOINTS else None
        frame[joint] = parent if driven is None else parent @ local[..., driven, :, :]
    return pos


@dataclass(frozen=True)
class SyntheticSkeletons:
    """Every performance rendered from every azimuth.

    Shapes: clips (A, N, 3, T, 25, 2) float32; labels (N,) int64 (class-major)
    """

    clips: np.ndarray
    labels: np.ndarray
    azimuths_deg: tuple[float, ...]


def synthesize_skeleton_actions(
    num_classes: int = 10,
    samples_per_class: int = 60,
    num_frames: int = 64,
    seed: int = 0,
    azimuths_deg: tuple[float, ...] = AZIMUTHS_DEG,
    noise_std: float = 0.02,
) -> SyntheticSkeletons:
    """Generate ``samples_per_class`` performances per class, each seen from every azimuth.

    View ``a`` is ``rotate_clips(world, a)`` plus its own N(0, noise_std²) joint noise, so with
    ``noise_std=0`` views are exact rotations of each other. Deterministic in ``seed``.
    """
    if num_classes < 2 or samples_per_class < 1 or num_frames < 2:
        raise ValueError(
            f"num_classes={num_classes}, samples_per_class={samples_per_class}, "
            f"num_frames={num_frames}: need >= 2, >= 1 and >= 2"
        )
    class_rng, perf_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    motions = class_motions(num_classes, class_rng)
    labels = np.repeat(np.arange(num_classes), samples_per_class)
    n = len(labels)
    lengths = perf_rng.integers(math.ceil(MIN_LENGTH_FRACTION * num_frames), num_frames + 1, n)
    tau = (np.arange(num_frames)[None] % lengths[:, None]) / lengths[:, None]  # (N, T) looped
    angles = _joint_angles(motions, labels, tau, perf_rng)

    two = motions.two_bodies[labels]  # (N,)
    side = np.where(motions.mirrored[labels], -1.0, 1.0)[:, None]  # a mirror twin swaps sides
    yaw = np.where(two[:, None], side * np.array([-TWO_BODY_YAW_DEG, TWO_BODY_YAW_DEG]), 0.0)
    yaw = yaw + perf_rng.normal(0, HEADING_JITTER_DEG, (n, MAX_BODIES))
    place = np.where(two[:, None], side * np.array([-0.5, 0.5]) * TWO_BODY_GAP, 0.0)  # x, m
    position = np.stack([place, np.zeros_like(place), np.zeros_like(place)], -1)
    position[..., [0, 2]] += perf_rng.normal(0, POSITION_JITTER, (n, MAX_BODIES, 2))
    heading = _euler_xyz(np.stack([np.zeros_like(yaw), np.radians(yaw), np.zeros_like(yaw)], -1))
    root = np.concatenate([heading, position[:, :, None]], axis=2)  # (N, 2, 4, 3)
    scale = perf_rng.uniform(0.9, 1.1, (n, MAX_BODIES))
    world = _forward_kinematics(angles, root, scale)  # (N, 2, T, 25, 3)
    world[~two, 1] = 0.0
    world = world.transpose(0, 4, 2, 3, 1)  # (N, 3, T, 25, 2)
    present = np.broadcast_to(np.stack([np.ones(n), two], -1)[:, None, None, None], world.shape)

    views = []
    for azimuth in azimuths_deg:
        view = rotate_clips(world, azimuth)
        view = view + noise_rng.normal(0, noise_std, view.shape) * present
        views.append(view.astype(np.float32))
    return SyntheticSkeletons(np.stack(views), labels.astype(np.int64), tuple(azimuths_deg))
