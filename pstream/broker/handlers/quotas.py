"""DescribeClientQuotas and AlterClientQuotas (KIP-546): quotas stored and described."""
