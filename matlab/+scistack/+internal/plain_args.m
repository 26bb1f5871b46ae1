function args = plain_args(args)
%PLAIN_ARGS Name/value arguments with every MATLAB string turned into char / cellstr.
%   MATLAB's Name=Value syntax (R2021a+) passes the names as strings and users pass
%   "double-quoted" values; the rest of the client compares with strcmp on char.
for k = 1:numel(args)
    args{k} = scistack.internal.plain(args{k});
end
end
