classdef StrCase < scistack.BaseVariable
end
