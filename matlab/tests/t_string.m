function s = t_string(x)
%T_STRING A string made from char or cellstr X: MATLAB's own string class, or under Octave
%   the stand-in matlab/tests/string_double/string.m. The one place the tests build strings
%   (the compatibility scan allows string() here only).
s = string(x);
end
