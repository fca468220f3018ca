"""Image and graph labeling with (linearized) assignment flows."""

from .api import label
from .data_term import distance_matrix
from .flow import AssignmentFlow, LabelingResult, LinearizedAssignmentFlow, LinearizedFlowSequence

__all__ = ["AssignmentFlow", "LabelingResult", "LinearizedAssignmentFlow", "LinearizedFlowSequence",
           "distance_matrix", "label"]
