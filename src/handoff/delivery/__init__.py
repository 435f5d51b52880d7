# READ FIRST: /work/main/WORKING-AGREEMENT.md (commit rules, shared files, tests, 04:20 UTC deadline).
