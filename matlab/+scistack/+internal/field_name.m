function name = field_name(k)
%FIELD_NAME K as a valid struct field name (see is_field_name): K itself when it is one,
%   else matlab.lang.makeValidName(K), with an x prefix where that is still not valid.
if scistack.internal.is_field_name(k)
    name = k;
    return
end
name = matlab.lang.makeValidName(k);
if ~scistack.internal.is_field_name(name)
    name = ['x', regexprep(name, '[^A-Za-z0-9_]', '_')];
    name = name(1:min(end, namelengthmax));
end
end
