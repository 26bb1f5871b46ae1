function t = cli_message(err, out, status)
%CLI_MESSAGE What a failed `scistack` command said (its "error: " prefix removed), or its
%   exit STATUS when it printed nothing.
t = strtrim(regexprep([err, ' ', out], '^\s*error:\s*', ''));
if isempty(t)
    t = sprintf('the scistack command exited with status %d and printed nothing', status);
end
end
