"""The reports: the JSON results document, the HTML report and the console summary."""
