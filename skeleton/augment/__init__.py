"""Augmentation: AutoAugment operations on tensor batches, sub-policies, and the Light Fast
AutoAugment search that picks policies with the trained network (density matching)."""
from .ops import OPERATIONS
from .policy import PolicyAugmenter, SubPolicy, load_pool, parse_subpolicy
from .search import SearchResult, search_policies

__all__ = ["OPERATIONS", "PolicyAugmenter", "SubPolicy", "load_pool", "parse_subpolicy",
           "SearchResult", "search_policies"]
