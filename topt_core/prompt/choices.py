"""Allowed values of stage 2's choice settings that more than one layer spells out (the config's
check, the command line, the Processing algorithm). No imports, so ``topt_core.config`` can read it."""

USE_HEAD_CHOICES = ("off", "on", "auto")     # PromptConfig.use_head: the cross-attention head route
