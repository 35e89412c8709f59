"""Agents: tools and the agent loop; an agent is itself a ChatModel (a later issue)."""
