"""Guest side: the cffi binding of test_hmm's uapi and the wrapper the suites use."""
