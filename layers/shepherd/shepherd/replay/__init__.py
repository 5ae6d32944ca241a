"""Pre-flight replay: the candidate answers the champion's captured requests offline, before any live traffic.

records: captured requests, their stratified sample and the Batch Transform input; verdict: the comparison with
the champion's answers and its error rates (shepherd/replay/README.md).
"""
