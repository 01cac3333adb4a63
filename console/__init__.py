"""The call console: a read-only web page to watch live calls and study past ones."""
