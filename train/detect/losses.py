"""The detector's training loss: focal loss on class scores plus smooth L1 on box offsets.

Focal loss (Lin et al., RetinaNet) is how class imbalance is handled: about
two thousand anchors per image are background and a handful hold an object,
and among the objects some classes are rarer than others; the (1 - p_t)^gamma
factor stops the many easy anchors from drowning the few hard ones, and alpha
balances positives against negatives. Both terms are summed over the batch and
divided by its number of positive anchors, so the loss does not depend on how
many objects a batch happens to hold. Targets come from anchors.assign: four
encoded offsets and a class target (-1 ignored, 0 background, k + 1 class k).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossConfig:
    alpha: float = 0.25
    gamma: float = 2.0
    box_weight: float = 1.0
    huber_delta: float = 1.0


def detection_loss(targets, box_pred, logits, cfg: LossConfig = LossConfig()):
    """(total, class loss, box loss) for targets [B, N, 5], offsets [B, N, 4] and class logits [B, N, C]."""
    import tensorflow as tf

    cls_target = tf.cast(targets[..., 4], tf.int32)
    num_classes = logits.shape[-1]
    onehot = tf.one_hot(cls_target - 1, num_classes)  # background (0) and ignored (-1) give all zeros
    valid = tf.cast(cls_target >= 0, tf.float32)[..., None]
    positive = tf.cast(cls_target > 0, tf.float32)
    normaliser = tf.maximum(tf.reduce_sum(positive), 1.0)

    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits)
    p = tf.sigmoid(logits)
    p_t = onehot * p + (1 - onehot) * (1 - p)
    alpha_t = onehot * cfg.alpha + (1 - onehot) * (1 - cfg.alpha)
    focal = alpha_t * tf.pow(1.0 - p_t, cfg.gamma) * cross_entropy * valid
    class_loss = tf.reduce_sum(focal) / normaliser

    diff = tf.abs(targets[..., :4] - box_pred)
    delta = cfg.huber_delta
    huber = tf.where(diff < delta, 0.5 * diff * diff / delta, diff - 0.5 * delta)
    box_loss = tf.reduce_sum(tf.reduce_sum(huber, axis=-1) * positive) / normaliser
    return class_loss + cfg.box_weight * box_loss, class_loss, box_loss
