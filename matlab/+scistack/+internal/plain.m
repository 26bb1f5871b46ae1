function x = plain(x)
%PLAIN A MATLAB string (scalar or array) as the char / cellstr the client works with.
%   A string scalar ("baseline") becomes a char row, a string array (["pre" "post"]) a
%   1 x N cellstr; a cell array has its string elements converted; anything else is
%   returned as is. Octave has no string class, so there this only ever sees char/cell
%   (the tests use a stand-in class named string: matlab/tests/string_double/string.m).
if isa(x, 'string')
    c = cellstr(x);
    if numel(c) == 1
        x = c{1};
    else
        x = reshape(c, 1, []);
    end
elseif iscell(x)
    for k = 1:numel(x)
        if isa(x{k}, 'string')
            x{k} = scistack.internal.plain(x{k});
        end
    end
end
end
