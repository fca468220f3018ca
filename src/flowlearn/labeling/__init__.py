"""Image and graph labeling with (linearized) assignment flows."""

from .api import FlowKind, label
from .data_term import distance_matrix
from .flow import AssignmentFlow
from .linearized import LinearizedAssignmentFlow, LinearizedFlowSequence
from .result import LabelingResult

__all__ = [
    "AssignmentFlow",
    "FlowKind",
    "LabelingResult",
    "LinearizedAssignmentFlow",
    "LinearizedFlowSequence",
    "distance_matrix",
    "label",
]
